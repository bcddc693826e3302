// /v1/tokens: create (secret shown once), list (never secrets), revoke.
import type { TokenService } from '../../auth/token-service.js';
import type { Handlers } from '../types.js';

export function tokenRoutes(deps: { tokens: TokenService }): Pick<Handlers, 'tokensList' | 'tokenCreate' | 'tokenDelete'> {
  return {
    async tokensList() {
      return { status: 200, body: { items: await deps.tokens.list() } };
    },

    async tokenCreate({ body }) {
      const created = await deps.tokens.create(body.description === undefined ? { name: body.name } : { name: body.name, description: body.description });
      return {
        status: 201,
        body: created,
        headers: { Location: `/v1/tokens/${encodeURIComponent(created.token.name)}`, 'Cache-Control': 'no-store' },
      };
    },

    async tokenDelete({ path }) {
      await deps.tokens.delete(path.name);
      return { status: 204, body: undefined };
    },
  };
}
