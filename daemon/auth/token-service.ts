// API tokens for the TCP listener: random secrets shown once, stored only as a SHA-256 hash in the
// store's `tokens` sublevel, checked in constant time.
import { createHash, randomBytes as nodeRandomBytes, timingSafeEqual } from 'node:crypto';
import { AppError } from '../lib/errors.js';
import type { KeySpace } from '../store/store.js';

/** Recognizable in logs, config files and secret scanners. */
export const TOKEN_PREFIX = 'nvt_';
const SECRET_BYTES = 32;
/** base64url of 32 bytes, unpadded. */
const SECRET_PATTERN = /^nvt_[A-Za-z0-9_-]{43}$/;
const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export interface TokenInfo {
  name: string;
  description?: string;
  createdAt: string;
  lastUsedAt: string | null;
}

/** What the store holds: never the secret, only its hash (SHA-256 suffices for 256-bit random secrets). */
export interface StoredToken extends TokenInfo {
  sha256: string;
}

export interface TokenService {
  create(input: { name: string; description?: string }): Promise<{ token: TokenInfo; secret: string }>;
  /** Sorted by name. */
  list(): Promise<TokenInfo[]>;
  /** Throws AppError NOT_FOUND when there is no such token. */
  delete(name: string): Promise<void>;
  /** The token a bearer secret belongs to, or undefined; records lastUsedAt. */
  verify(secret: string): Promise<TokenInfo | undefined>;
}

export interface TokenServiceDeps {
  tokens: KeySpace<StoredToken>;
  now?: () => Date;
  randomBytes?: (n: number) => Buffer;
  /** lastUsedAt is rewritten at most this often per token, so authentication is not a store write per request. */
  lastUsedResolutionMs?: number;
}

export function createTokenService(deps: TokenServiceDeps): TokenService {
  const now = deps.now ?? (() => new Date());
  const random = deps.randomBytes ?? nodeRandomBytes;
  const resolution = deps.lastUsedResolutionMs ?? 60_000;

  // Every read-modify-write goes through this chain so that a create cannot race a create of the same
  // name and a lastUsedAt update cannot resurrect a token deleted meanwhile.
  let chain: Promise<unknown> = Promise.resolve();
  const serialized = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = chain.then(fn, fn);
    chain = run.catch(() => undefined);
    return run;
  };

  return {
    async create({ name, description }) {
      if (!NAME_PATTERN.test(name) || name.length > 63) {
        throw new AppError('VALIDATION_FAILED', `invalid token name ${JSON.stringify(name)}`, {
          issues: [{ pointer: '/body/name', reason: 'must be 1-63 lowercase letters, digits and inner dashes' }],
        });
      }
      return serialized(async () => {
        if ((await deps.tokens.get(name)) !== undefined) {
          throw new AppError('CONFLICT', `a token named ${name} already exists`);
        }
        const secret = TOKEN_PREFIX + random(SECRET_BYTES).toString('base64url');
        const stored: StoredToken = {
          name,
          ...(description === undefined ? {} : { description }),
          createdAt: now().toISOString(),
          lastUsedAt: null,
          sha256: hash(secret),
        };
        await deps.tokens.put(name, stored);
        return { token: publicView(stored), secret };
      });
    },

    async list() {
      const all = await deps.tokens.list();
      return all.map(([, t]) => publicView(t)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    },

    async delete(name) {
      return serialized(async () => {
        if ((await deps.tokens.get(name)) === undefined) throw new AppError('NOT_FOUND', `no token named ${name}`);
        await deps.tokens.del(name);
      });
    },

    async verify(secret) {
      if (!SECRET_PATTERN.test(secret)) return undefined;
      const presented = Buffer.from(hash(secret), 'hex');
      let match: StoredToken | undefined;
      // Compare against every token without stopping early: timing does not reveal which one matched.
      for (const [, t] of await deps.tokens.list()) {
        const stored = Buffer.from(t.sha256, 'hex');
        if (stored.length === presented.length && timingSafeEqual(stored, presented)) match = t;
      }
      if (!match) return undefined;
      const at = now();
      const last = match.lastUsedAt === null ? undefined : Date.parse(match.lastUsedAt);
      if (last !== undefined && at.getTime() - last < resolution) return publicView(match);
      const name = match.name;
      return serialized(async () => {
        const current = await deps.tokens.get(name);
        // Deleted (or replaced by a new token of the same name) between the read and now: not valid any more.
        if (!current || current.sha256 !== match.sha256) return undefined;
        const updated = { ...current, lastUsedAt: at.toISOString() };
        await deps.tokens.put(name, updated);
        return publicView(updated);
      });
    },
  };
}

function hash(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

function publicView(t: StoredToken): TokenInfo {
  return {
    name: t.name,
    ...(t.description === undefined ? {} : { description: t.description }),
    createdAt: t.createdAt,
    lastUsedAt: t.lastUsedAt,
  };
}
