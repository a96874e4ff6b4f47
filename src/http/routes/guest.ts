// POST /guest/v1/messages — the HTTP guest channel (docs/guest-protocol.md, "http transport"):
// one event line per request, authenticated by the VM's own bearer token, answered with host →
// guest lines (text/plain). Guests of providers without a channel of their own report here.
import { Router, type Request, type Response } from 'express';
import type { GuestInbox } from '../../core/guest-inbox.ts';
import { GUEST_MESSAGES_PATH, MAX_LINE, parseGuestLine } from '../../guest/protocol.ts';
import { rawBody } from '../auth.ts';

export function guestRoutes(deps: { inbox: GuestInbox }) {
  const router = Router();
  router.post(GUEST_MESSAGES_PATH, async (req: Request, res: Response) => {
    const text = (status: number, body: string): void => {
      res.status(status).type('text/plain').send(body);
    };
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '')?.[1];
    if (!bearer) {
      res.set('WWW-Authenticate', 'Bearer');
      text(401, 'error: a VM channel token is required (Authorization: Bearer <HATCHERY_CHANNEL_TOKEN>)\n');
      return;
    }
    const body = rawBody(req);
    const msg = body.length <= MAX_LINE ? parseGuestLine(body.toString('utf8').replace(/\n$/, '')) : null;
    if (!msg) {
      text(400, 'error: body: expected one line "event <seq> <name> [detail]"\n');
      return;
    }
    const answer = await deps.inbox.receive(bearer, msg);
    switch (answer.kind) {
      case 'unauthorized':
        res.set('WWW-Authenticate', 'Bearer');
        text(401, 'error: unknown or wrong channel token\n');
        return;
      case 'gone':
        text(410, `error: the VM is ${answer.state}\n`);
        return;
      case 'not_ready':
        // The guest retries a failed post (1, 2, 4 … s): its message is taken once `created` is.
        res.set('Retry-After', '1');
        text(503, `error: the VM is still ${answer.state}\n`);
        return;
      case 'taken':
        text(200, answer.lines.map((l) => `${l}\n`).join(''));
        return;
    }
  });
  return router;
}
