// Counts of GitHub webhooks by event, for the API (GET /api/v1/webhooks): what was handled, what
// was ignored (events Hatchery does not act on, still answered 2xx), duplicates, and refusals.
// In memory: a restart starts from zero (the deliveries themselves are in the store).

export interface EventCounts {
  handled: number;
  ignored: number;
  duplicate: number;
}

export class WebhookStats {
  private readonly byEvent = new Map<string, EventCounts>();
  /** Refused before being read: bad or missing signature. */
  badSignature = 0;
  /** Signed but malformed (headers, JSON, fields). */
  invalid = 0;

  count(event: string, outcome: keyof EventCounts): void {
    let c = this.byEvent.get(event);
    if (!c) {
      c = { handled: 0, ignored: 0, duplicate: 0 };
      this.byEvent.set(event, c);
    }
    c[outcome]++;
  }

  snapshot(): { events: Record<string, EventCounts>; bad_signature: number; invalid: number } {
    return {
      events: Object.fromEntries([...this.byEvent].map(([k, v]) => [k, { ...v }])),
      bad_signature: this.badSignature,
      invalid: this.invalid,
    };
  }
}
