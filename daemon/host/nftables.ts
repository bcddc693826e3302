// nftables through the nft command: one `nft -f -` batch per change (the kernel applies it all or
// nothing) and `nft -j list table` to read a table back. Rulesets themselves are built in net/nft-rules.ts.
import { AppError } from '../lib/errors.js';
import { runCommand } from './run-command.js';

export interface Nftables {
  /** Applies one batch atomically; HOST_ERROR with nft's stderr (which names the failing line) on failure. */
  apply(script: string): Promise<void>;
  /** The `nft -j list table FAMILY NAME` document, or undefined when there is no such table. */
  listTable(family: string, table: string): Promise<string | undefined>;
  /** Every table in the namespace, anyone's (`nft -j list tables`): sweeps pick out ours by name. */
  listTables(): Promise<Array<{ family: string; name: string }>>;
  /** A table's comment (`add table F T { comment "..."; }`); undefined without one or without the table. */
  tableComment(family: string, table: string): Promise<string | undefined>;
}

const WORD = /^[a-z0-9_]{1,64}$/;

export function createNftables(opts: { netns?: string } = {}): Nftables {
  const run = opts.netns === undefined ? {} : { netns: opts.netns };
  return {
    async apply(script) {
      if (script === '') return;
      await runCommand('nft', ['-f', '-'], { ...run, input: script });
    },
    async listTable(family, table) {
      if (!WORD.test(family) || !WORD.test(table)) throw new Error(`nftables: bad family/table ${family} ${table}`);
      const r = await runCommand('nft', ['-j', 'list', 'table', family, table], { ...run, okCodes: [1] });
      if (r.code === 0) return r.stdout;
      if (/No such file or directory/.test(r.stderr)) return undefined;
      // Any other exit 1 is a real failure.
      throw new AppError('HOST_ERROR', `nft list table ${family} ${table} failed: ${r.stderr.trim()}`, { extra: { stderr: r.stderr } });
    },
    async tableComment(family, table) {
      if (!WORD.test(family) || !WORD.test(table)) throw new Error(`nftables: bad family/table ${family} ${table}`);
      // `nft -j` (1.0.6) leaves table comments out; the text form prints one right after the table line.
      const r = await runCommand('nft', ['list', 'table', family, table], { ...run, okCodes: [1] });
      if (r.code !== 0) return undefined;
      return /^table [^\n]*\{\n\s*comment "([^"]*)"/.exec(r.stdout)?.[1];
    },
    async listTables() {
      const r = await runCommand('nft', ['-j', 'list', 'tables'], run);
      const doc = JSON.parse(r.stdout) as { nftables?: Array<{ table?: { family: string; name: string } }> };
      return (doc.nftables ?? []).flatMap((i) => (i.table === undefined ? [] : [{ family: i.table.family, name: i.table.name }]));
    },
  };
}
