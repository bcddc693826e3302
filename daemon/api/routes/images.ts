// /v1/images: list, get and delete registry images, and POST an import that runs as an operation (202 +
// Location, or with ?wait the finished operation / its problem). storage/image-registry.ts does the work.
import { AppError } from '../../lib/errors.js';
import type { Operations } from '../../ops/types.js';
import type { ImageImportRequest, ImageRecord, ImageRegistry } from '../../storage/image-registry.js';
import { operationResponse } from '../operation-response.js';
import type { Handlers, Schemas } from '../types.js';

/** What the routes need from storage/image-registry.ts. */
export type ImageApi = Pick<ImageRegistry, 'list' | 'get' | 'import' | 'delete'>;

const toImage = (r: ImageRecord): Schemas['Image'] => ({ ...r });

export function imageRoutes(deps: { images: ImageApi | undefined; ops: Operations | undefined }): Pick<Handlers, 'imagesList' | 'imageImport' | 'imageGet' | 'imageDelete'> {
  // Fail loudly until main.ts wires them, rather than answering as if there were no images.
  const svc = (): ImageApi => {
    if (!deps.images) throw new AppError('INTERNAL', 'the image registry is not wired into this daemon');
    return deps.images;
  };
  const ops = (): Operations => {
    if (!deps.ops) throw new AppError('INTERNAL', 'operations are not wired into this daemon');
    return deps.ops;
  };
  return {
    async imagesList() {
      return { status: 200, body: { items: (await svc().list()).map(toImage) } };
    },

    async imageImport({ query, body }) {
      const o = ops();
      const view = await svc().import(body as ImageImportRequest);
      return operationResponse(o, view, query.wait);
    },

    async imageGet({ path }) {
      return { status: 200, body: toImage(await svc().get(path.name)) };
    },

    async imageDelete({ path }) {
      await svc().delete(path.name);
      return { status: 204, body: undefined };
    },
  };
}
