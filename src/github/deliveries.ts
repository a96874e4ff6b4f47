// The GitHub App's webhook deliveries: GitHub posts each event once and never retries, but
// keeps every attempt for three days and redelivers one on request. Used by core/redeliver.ts.
import type { GitHubApp } from './app.ts';

export interface DeliveryItem {
  id: number;
  guid: string;
  deliveredAt: number;
  statusCode: number;
  event: string;
  action: string | null;
  redelivery: boolean;
}

export interface DeliveriesApi {
  /** Failed deliveries made at or after `since` (epoch ms), newest first. */
  failedSince(since: number): Promise<DeliveryItem[]>;
  /** Asks GitHub to deliver it again (same guid, a new delivery id). */
  redeliver(id: number): Promise<void>;
}

const MAX_PAGES = 50;

export function deliveriesApi(app: GitHubApp): DeliveriesApi {
  return {
    async failedSince(since) {
      const out: DeliveryItem[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < MAX_PAGES; page++) {
        const r = await app.appResponse<
          {
            id: number;
            guid: string;
            delivered_at: string;
            status_code: number;
            event: string;
            action: string | null;
            redelivery: boolean;
          }[]
        >('GET /app/hook/deliveries', { per_page: 100, status: 'failure', ...(cursor ? { cursor } : {}) });
        for (const d of r.data) {
          const at = Date.parse(d.delivered_at);
          if (at < since) return out; // newest first: the rest is older
          out.push({
            id: d.id,
            guid: d.guid,
            deliveredAt: at,
            statusCode: d.status_code,
            event: d.event,
            action: d.action,
            redelivery: d.redelivery,
          });
        }
        // The next page's cursor is only in the Link header.
        const next = /<([^>]+)>;\s*rel="next"/.exec(String(r.headers.link ?? ''));
        cursor = next ? (new URL(next[1]!).searchParams.get('cursor') ?? undefined) : undefined;
        if (!cursor) break;
      }
      return out;
    },
    async redeliver(id) {
      await app.appRequest('POST /app/hook/deliveries/{delivery_id}/attempts', { delivery_id: id });
    },
  };
}
