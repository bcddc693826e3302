// The daemon's only state: a classic-level database under the state dir. One process owns it,
// so every tool goes through the API. Each repository gets a sublevel of its own.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';

/** Bump when a stored shape changes; open() refuses a database newer than this code. */
export const SCHEMA_VERSION = 1;


export interface Store {
  open(): Promise<void>;
  close(): Promise<void>;
  /** A JSON-valued key space of its own, e.g. store.sublevel<Token>('tokens'). */
  sublevel<V>(name: string): KeySpace<V>;
  readonly path: string;
}

/** A typed view over one sublevel. Values are JSON. */
export interface KeySpace<V> {
  get(key: string): Promise<V | undefined>;
  put(key: string, value: V): Promise<void>;
  del(key: string): Promise<void>;
  list(): Promise<Array<[string, V]>>;
  batch(ops: Array<{ type: 'put'; key: string; value: V } | { type: 'del'; key: string }>): Promise<void>;
}

export function createStore(opts: { stateDir: string }): Store {
  const path = join(opts.stateDir, 'db');
  const db = new ClassicLevel<string, unknown>(path, { valueEncoding: 'json' });

  return {
    path,
    async open() {
      await mkdir(opts.stateDir, { recursive: true, mode: 0o750 });
      try {
        await db.open();
      } catch (e) {
        // classic-level hides the reason in `cause`; the common one is a second daemon on the same state dir.
        const cause = (e as { cause?: unknown }).cause;
        const why = cause instanceof Error ? cause.message : (e as Error).message;
        if (/lock/i.test(why)) throw new Error(`state database ${path} is locked: is another nodevirtd running on ${opts.stateDir}? (${why})`);
        throw new Error(`cannot open the state database ${path}: ${why}`);
      }
      const meta = db.sublevel<string, number>('meta', { valueEncoding: 'json' });
      const version = await meta.get('schemaVersion');
      if (version === undefined) {
        await meta.put('schemaVersion', SCHEMA_VERSION);
      } else if (version > SCHEMA_VERSION) {
        await db.close();
        throw new Error(`state database ${path} has schema version ${version}, newer than this nodevirtd (${SCHEMA_VERSION})`);
      }
    },
    async close() {
      if (db.status === 'open') await db.close();
    },
    sublevel<V>(name: string): KeySpace<V> {
      const sub = db.sublevel<string, V>(name, { valueEncoding: 'json' });
      return {
        get: (key) => sub.get(key),
        put: (key, value) => sub.put(key, value),
        del: (key) => sub.del(key),
        async list() {
          const out: Array<[string, V]> = [];
          for await (const [k, v] of sub.iterator()) out.push([k, v]);
          return out;
        },
        batch: (ops) => sub.batch(ops),
      };
    },
  };
}
