// GET /v1/healthz: answers as long as the event loop does; deliberately touches no dependency.
import type { Handlers } from '../types.js';

export function healthzRoutes(): Pick<Handlers, 'healthzGet'> {
  return {
    async healthzGet() {
      return { status: 200, body: { status: 'ok' } };
    },
  };
}
