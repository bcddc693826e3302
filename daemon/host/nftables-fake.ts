// A stateful in-memory Nftables for unit tests. It interprets the subset of nft syntax nodevirt writes
// (tables, verdict maps, chains, rules, elements; add/flush/delete) as one transaction per batch, refuses
// what the kernel refuses (missing objects, deleting a chain something jumps to) and rejects any
// other statement rather than pretending to understand it.
import { AppError } from '../lib/errors.js';
import type { Nftables } from './nftables.js';

interface Chain {
  base: string | undefined;
  rules: string[];
}
interface Table {
  comment?: string;
  chains: Map<string, Chain>;
  /** map name -> (key -> verdict text, e.g. "jump nvt...") */
  maps: Map<string, Map<string, string>>;
}

export interface FakeNftables extends Nftables {
  /** Every batch applied successfully, in order. */
  readonly batches: string[];
  /** Makes the next batches whose text passes `pred` fail (before any change). */
  failOn(pred: ((script: string) => boolean) | undefined): void;
}

const key = (family: string, table: string) => `${family} ${table}`;

function clone(tables: Map<string, Table>): Map<string, Table> {
  const out = new Map<string, Table>();
  for (const [k, t] of tables) {
    out.set(k, {
      ...(t.comment === undefined ? {} : { comment: t.comment }),
      chains: new Map([...t.chains].map(([n, c]) => [n, { base: c.base, rules: [...c.rules] }])),
      maps: new Map([...t.maps].map(([n, m]) => [n, new Map(m)])),
    });
  }
  return out;
}

export function createFakeNftables(): FakeNftables {
  let tables = new Map<string, Table>();
  const batches: string[] = [];
  let fail: ((s: string) => boolean) | undefined;

  function exec(state: Map<string, Table>, line: string, lineNo: number): void {
    const bad = (msg: string, errno = 'ENOENT') => new AppError('HOST_ERROR', `nft -f - failed: line ${lineNo}: ${msg}: ${line}`, { extra: { errno, line: lineNo, stderr: msg } });
    const m = /^(add|delete|flush) (table|chain|map|rule|element) (\w+) (\w+)(?: (.*))?$/.exec(line);
    if (!m) throw bad('syntax not understood by the fake', 'EINVAL');
    const [, verb, obj, family, tableName, rest = ''] = m as unknown as [string, string, string, string, string, string | undefined];
    const tk = key(family, tableName);
    const table = () => {
      const t = state.get(tk);
      if (!t) throw bad('No such file or directory (table)');
      return t;
    };
    const words = rest.split(' ');
    const referenced = (t: Table, chain: string) =>
      [...t.maps.values()].some((mp) => [...mp.values()].some((v) => v === `jump ${chain}` || v === `goto ${chain}`)) ||
      [...t.chains.values()].some((c) => c.rules.some((r) => new RegExp(`\\b(jump|goto) ${chain}\\b`).test(r)));

    if (obj === 'table') {
      const comment = /^\{ comment "([^"]*)"; \}$/.exec(rest);
      if (rest !== '' && !(verb === 'add' && comment)) throw bad('unexpected text after table', 'EINVAL');
      if (verb === 'add') {
        // Like the kernel: a comment is set when the table is made, not changed on an existing one.
        if (!state.has(tk)) state.set(tk, { chains: new Map(), maps: new Map(), ...(comment ? { comment: comment[1]! } : {}) });
      } else if (verb === 'delete') {
        table();
        state.delete(tk);
      } else throw bad('flush table is not supported by the fake', 'EINVAL');
      return;
    }
    if (obj === 'map') {
      const mm = /^(\w+) \{ type ifname : verdict; \}$/.exec(rest);
      if (verb !== 'add' || !mm) throw bad('only "add map NAME { type ifname : verdict; }" is supported', 'EINVAL');
      const t = table();
      if (!t.maps.has(mm[1]!)) t.maps.set(mm[1]!, new Map());
      return;
    }
    if (obj === 'chain') {
      const name = words[0]!;
      const t = table();
      if (verb === 'add') {
        const spec = rest.slice(name.length).trim();
        if (spec !== '' && !/^\{ type filter hook \w+ priority -?\d+; policy accept; \}$/.test(spec)) throw bad('unsupported chain spec', 'EINVAL');
        const have = t.chains.get(name);
        if (have && spec !== '' && have.base !== spec) throw bad('Chain exists with another type', 'EEXIST');
        if (!have) t.chains.set(name, { base: spec || undefined, rules: [] });
        return;
      }
      const c = t.chains.get(name);
      if (!c) throw bad('No such file or directory (chain)');
      if (verb === 'flush') c.rules = [];
      else {
        // Like the kernel: the chain's rules go with it; only a jump to it blocks the delete.
        if (referenced(t, name)) throw bad('Device or resource busy', 'EBUSY');
        t.chains.delete(name);
      }
      return;
    }
    if (obj === 'rule') {
      if (verb !== 'add') throw bad('only add rule is supported', 'EINVAL');
      const name = words[0]!;
      const body = rest.slice(name.length).trim();
      const t = table();
      const c = t.chains.get(name);
      if (!c) throw bad('No such file or directory (chain)');
      if (body === '') throw bad('empty rule', 'EINVAL');
      const vmap = /vmap @(\w+)/.exec(body);
      if (vmap && !t.maps.has(vmap[1]!)) throw bad('No such file or directory (map)');
      const jump = /\b(?:jump|goto) (\w+)/.exec(body);
      if (jump && !t.chains.has(jump[1]!)) throw bad('No such file or directory (jump target)');
      c.rules.push(body);
      return;
    }
    // element
    const em = verb === 'add' ? /^(\w+) \{ "([^"]+)" : (jump|goto) (\w+) \}$/.exec(rest) : /^(\w+) \{ "([^"]+)" \}$/.exec(rest);
    if (!em || verb === 'flush') throw bad('unsupported element syntax', 'EINVAL');
    const t = table();
    const mp = t.maps.get(em[1]!);
    if (!mp) throw bad('No such file or directory (map)');
    if (verb === 'add') {
      if (!t.chains.has(em[4]!)) throw bad('No such file or directory (jump target)');
      const v = `${em[3]} ${em[4]}`;
      const have = mp.get(em[2]!);
      if (have !== undefined && have !== v) throw bad('File exists', 'EEXIST');
      mp.set(em[2]!, v);
    } else {
      if (!mp.has(em[2]!)) throw bad('No such file or directory (element)');
      mp.delete(em[2]!);
    }
  }

  return {
    batches,
    failOn(pred) {
      fail = pred;
    },
    async apply(script) {
      if (script === '') return;
      if (fail?.(script)) throw new AppError('HOST_ERROR', 'nft -f - failed: injected failure', { extra: { errno: 'EIO' } });
      const next = clone(tables);
      script.split('\n').forEach((raw, i) => {
        const line = raw.trim();
        if (line !== '' && !line.startsWith('#')) exec(next, line, i + 1);
      });
      tables = next;
      batches.push(script);
    },
    async tableComment(family, table) {
      return tables.get(key(family, table))?.comment;
    },
    async listTables() {
      return [...tables.keys()].map((k) => {
        const [family, name] = k.split(' ') as [string, string];
        return { family, name };
      });
    },
    async listTable(family, table) {
      const t = tables.get(key(family, table));
      if (!t) return undefined;
      const items: unknown[] = [{ metainfo: { version: 'fake', json_schema_version: 1 } }, { table: { family, name: table } }];
      for (const [name, mp] of t.maps) {
        const elem = [...mp].map(([k, v]) => {
          const [verdict, target] = v.split(' ');
          return [k, { [verdict!]: { target } }];
        });
        items.push({ map: { family, name, table, type: 'ifname', map: 'verdict', ...(elem.length ? { elem } : {}) } });
      }
      for (const [name] of t.chains) items.push({ chain: { family, table, name } });
      for (const [name, c] of t.chains) for (const r of c.rules) items.push({ rule: { family, table, chain: name, comment: r } });
      return JSON.stringify({ nftables: items });
    },
  };
}
