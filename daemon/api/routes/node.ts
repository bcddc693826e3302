// GET /v1/node: the host description, straight from the node service.
import type { Handlers, Node } from '../types.js';

export function nodeRoutes(deps: { node: { info(): Promise<Node> } }): Pick<Handlers, 'nodeGet'> {
  return {
    async nodeGet() {
      return { status: 200, body: await deps.node.info() };
    },
  };
}
