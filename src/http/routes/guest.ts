// /guest/v1/messages — the HTTP guest channel (docs/guest-protocol.md, "http transport"),
// authenticated by the VM's own bearer token. POST: one event line per request, answered with
// host → guest lines (text/plain). GET `?wait=<s>`: a long-poll for host lines, held open until
// one is ready (a warm VM's `jit`) or the wait runs out. Guests of providers without a channel
// of their own report here.
import { Router, type Request, type Response } from 'express';
import { MAX_POLL_WAIT_S, type GuestInbox, type InboxAnswer } from '../../core/guest-inbox.ts';
import { GUEST_MESSAGES_PATH, MAX_LINE, parseGuestLine } from '../../guest/protocol.ts';
import { rawBody } from '../auth.ts';

function text(res: Response, status: number, body: string): void {
  res.status(status).type('text/plain').send(body);
}

/** The request's channel token; answers 401 (and returns null) without one. */
function bearerOf(req: Request, res: Response): string | null {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '')?.[1];
  if (bearer) return bearer;
  res.set('WWW-Authenticate', 'Bearer');
  text(res, 401, 'error: a VM channel token is required (Authorization: Bearer <HATCHERY_CHANNEL_TOKEN>)\n');
  return null;
}

function reply(res: Response, answer: InboxAnswer): void {
  switch (answer.kind) {
    case 'unauthorized':
      res.set('WWW-Authenticate', 'Bearer');
      text(res, 401, 'error: unknown or wrong channel token\n');
      return;
    case 'gone':
      text(res, 410, `error: the VM is ${answer.state}\n`);
      return;
    case 'not_ready':
      // The guest retries a failed post (1, 2, 4 … s): its message is taken once `created` is.
      res.set('Retry-After', '1');
      text(res, 503, `error: the VM is still ${answer.state}\n`);
      return;
    case 'taken':
    case 'lines':
      text(res, 200, answer.lines.map((l) => `${l}\n`).join(''));
      return;
  }
}

export function guestRoutes(deps: { inbox: GuestInbox }) {
  const router = Router();
  router.post(GUEST_MESSAGES_PATH, async (req: Request, res: Response) => {
    const bearer = bearerOf(req, res);
    if (!bearer) return;
    const body = rawBody(req);
    const msg = body.length <= MAX_LINE ? parseGuestLine(body.toString('utf8').replace(/\n$/, '')) : null;
    if (!msg) {
      text(res, 400, 'error: body: expected one line "event <seq> <name> [detail]"\n');
      return;
    }
    reply(res, await deps.inbox.receive(bearer, msg));
  });
  router.get(GUEST_MESSAGES_PATH, async (req: Request, res: Response) => {
    const bearer = bearerOf(req, res);
    if (!bearer) return;
    const wait = req.query.wait ?? '0';
    if (typeof wait !== 'string' || !/^\d{1,3}$/.test(wait)) {
      text(res, 400, `error: wait: whole seconds (held at most ${MAX_POLL_WAIT_S})\n`);
      return;
    }
    // A guest that hangs up ends its wait: nothing is taken for an answer nobody reads.
    const hungUp = new AbortController();
    res.on('close', () => hungUp.abort());
    const answer = await deps.inbox.poll(bearer, Number(wait), hungUp.signal);
    if (!hungUp.signal.aborted) reply(res, answer);
  });
  return router;
}
