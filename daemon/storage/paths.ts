// Confines every user-given storage path to the configured storage roots: syntax first (no `..`, NUL,
// newlines or other control characters), then the real location (symlinks resolved) must stay inside a root.
import { lstat, realpath } from 'node:fs/promises';
import { isAbsolute, join, resolve, sep } from 'node:path';
import { AppError } from '../lib/errors.js';

export interface PathGuard {
  /**
   * The real absolute path for `input` (relative paths are taken from the first root), which need not exist
   * yet: the deepest existing ancestor is resolved with realpath and the rest appended. Throws PATH_INVALID.
   * What it returns can still be swapped by someone with write access to the root between this check and
   * the use; callers that create files open them with O_EXCL/O_NOFOLLOW, and roots are ours alone.
   */
  resolve(input: string): Promise<string>;
  /** The real paths of the roots. */
  roots(): Promise<string[]>;
}

const CONTROL_RE = /[\u0000-\u001f\u007f]/;
const MAX_PATH = 4096;

/** Syntax only, no file system access: the reasons a path is refused before we look at the disk. */
export function pathSyntaxProblem(input: string): string | undefined {
  if (typeof input !== 'string' || input === '') return 'must be a non-empty path';
  if (input.length > MAX_PATH) return `must be at most ${MAX_PATH} characters`;
  if (input.includes('\u0000')) return 'must not contain NUL';
  if (/[\n\r]/.test(input)) return 'must not contain newlines';
  if (CONTROL_RE.test(input)) return 'must not contain control characters';
  if (input.split('/').includes('..')) return "must not contain '..'";
  return undefined;
}

function inside(path: string, root: string): boolean {
  return path.startsWith(root.endsWith(sep) ? root : root + sep);
}

function invalid(input: string, why: string): AppError {
  return new AppError('PATH_INVALID', `${JSON.stringify(input)} ${why}`, { extra: { path: input } });
}

export function createPathGuard(opts: { roots: readonly string[] }): PathGuard {
  if (opts.roots.length === 0) throw new Error('createPathGuard: at least one storage root');
  for (const r of opts.roots) if (!isAbsolute(r)) throw new Error(`createPathGuard: root ${r} is not absolute`);
  let realRoots: Promise<string[]> | undefined;

  function roots(): Promise<string[]> {
    // Roots are resolved once: they are configuration, and re-resolving on every call would let a root that
    // became a symlink redirect everything.
    realRoots ??= Promise.all(opts.roots.map((r) => realpath(r)));
    realRoots.catch(() => (realRoots = undefined));
    return realRoots;
  }

  async function deepestReal(abs: string, input: string): Promise<string> {
    const tail: string[] = [];
    let cur = abs;
    for (;;) {
      const st = await lstat(cur).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return undefined;
        throw invalid(input, `cannot be checked (${e.code ?? e.message})`);
      });
      if (st) {
        // A dangling symlink would let a later create() write wherever it points.
        const real = await realpath(cur).catch(() => {
          throw invalid(input, 'goes through a dangling or looping symlink');
        });
        return tail.length ? join(real, ...tail.reverse()) : real;
      }
      const parent = resolve(cur, '..');
      if (parent === cur) throw invalid(input, 'has no existing ancestor');
      tail.push(cur.slice(parent.length + (parent.endsWith(sep) ? 0 : 1)));
      cur = parent;
    }
  }

  return {
    roots,
    async resolve(input) {
      const problem = pathSyntaxProblem(input);
      if (problem) throw invalid(input, problem);
      const rs = await roots();
      const lexical = isAbsolute(input) ? resolve(input) : resolve(rs[0]!, input);
      const configured = opts.roots.map((r) => resolve(r));
      if (!rs.some((r) => inside(lexical, r)) && !configured.some((r) => inside(lexical, r))) {
        throw invalid(input, `is outside the storage roots (${opts.roots.join(', ')})`);
      }
      const real = await deepestReal(lexical, input);
      if (!rs.some((r) => inside(real, r))) throw invalid(input, 'resolves outside the storage roots (through a symlink)');
      return real;
    },
  };
}
