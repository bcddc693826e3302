// The wrapper generator: signature -> TS type mapping, determinism, and no drift between the committed
// daemon/libvirt/generated/ and what the installed libvirt-dbus introspection XML produces.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_XML_DIR, generate, kebab, parseIntrospection, parseSignature, tsType } from '../../../daemon/libvirt/codegen/generate.js';

const GENERATED = 'daemon/libvirt/generated';
const t = (sig: string): string => parseSignature(sig).map(tsType).join(' | ');

describe('signature mapping', () => {
  it.each([
    ['s', 'string'],
    ['o', 'string'],
    ['u', 'number'],
    ['i', 'number'],
    ['d', 'number'],
    ['t', 'bigint'],
    ['x', 'bigint'],
    ['b', 'boolean'],
    ['v', 'Variant'],
    ['ay', 'Buffer'],
    ['as', 'string[]'],
    ['aab', 'boolean[][]'],
    ['(ii)', '[number, number]'],
    ['a(sb)', '[string, boolean][]'],
    ['a{sv}', 'Record<string, Variant>'],
    ['a{it}', 'Record<number, bigint>'],
    ['a(sa{sv})', '[string, Record<string, Variant>][]'],
    ['a(ssa(isu))', '[string, string, [number, string, number][]][]'],
  ])('%s -> %s', (sig, ts) => {
    expect(t(sig)).toBe(ts);
  });

  it('splits multi-type signatures and rejects malformed ones', () => {
    expect(parseSignature('sa{sv}u')).toHaveLength(3);
    for (const bad of ['a', '(s', 'a{s', 'z']) expect(() => parseSignature(bad)).toThrow();
  });

  it('names files in kebab case', () => {
    expect(['Connect', 'StoragePool', 'NWFilter', 'DomainSnapshot', 'NodeDevice'].map(kebab)).toEqual([
      'connect',
      'storage-pool',
      'nw-filter',
      'domain-snapshot',
      'node-device',
    ]);
  });
});

describe('generate', () => {
  it('emits typed methods, properties, signals and a spec table from introspection XML', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nv-codegen-'));
    try {
      writeFileSync(
        join(dir, 'org.libvirt.Thing.xml'),
        `<node><interface name="org.libvirt.Thing">
          <property name="Size" type="t" access="read"/>
          <property name="Auto" type="b" access="readwrite"/>
          <method name="Get"><annotation name="org.gtk.GDBus.DocString" value="See  */ docs"/>
            <arg name="flags" type="u" direction="in"/><arg name="state" type="(ii)" direction="out"/></method>
          <method name="Pair"><arg name="interface" type="s" direction="in"/>
            <arg name="a" type="s" direction="out"/><arg name="b" type="a{sv}" direction="out"/></method>
          <signal name="Changed"><arg name="path" type="o"/><arg name="event" type="i"/></signal>
        </interface></node>`,
      );
      const files = generate(dir);
      expect([...files.keys()]).toEqual(['thing.ts', 'index.ts']);
      const src = files.get('thing.ts')!;
      expect(src).toMatch(/^\/\/ GENERATED from org\.libvirt\.Thing\.xml/);
      expect(src).toContain('Get(flags: number): Promise<[number, number]>;');
      expect(src).toContain('Pair(interface_: string): Promise<[a: string, b: Record<string, Variant>]>;');
      expect(src).toContain('readonly Size: bigint;');
      expect(src).toContain('  Auto: boolean;');
      expect(src).toContain('Changed: [path: string, event: number];');
      expect(src).toContain("Get: ['u', '(ii)'],");
      expect(src).toContain("Changed: 'oi',");
      expect(src).toContain('/** See *\\/ docs */');
      expect(src).toContain("import type { Variant } from 'dbus-next';");
      expect(generate(dir)).toEqual(files);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('parses libvirt-dbus signal DomainEvent as (o, i, i) when the XML is installed', () => {
    const file = join(DEFAULT_XML_DIR, 'org.libvirt.Connect.xml');
    if (!existsSync(file)) {
      console.info(`skipping: ${file} not installed (libvirt-dbus)`);
      return;
    }
    const [connect] = parseIntrospection(readFileSync(file, 'utf8'));
    const sig = connect!.signals.find((s) => s.name === 'DomainEvent')!.args.map((a) => a.type).join('');
    expect(sig).toBe('oii');
  });

  it.skipIf(!existsSync(DEFAULT_XML_DIR))(`committed generated/ matches the installed introspection XML (run npm run gen:libvirt)${existsSync(DEFAULT_XML_DIR) ? '' : ` (skipped: ${DEFAULT_XML_DIR} missing; apt-get install libvirt-dbus)`}`, () => {
    const fresh = generate(DEFAULT_XML_DIR);
    const committed = readdirSync(GENERATED).filter((f) => f.endsWith('.ts')).sort();
    expect(committed).toEqual([...fresh.keys()].sort());
    for (const [name, content] of fresh) expect(readFileSync(join(GENERATED, name), 'utf8'), name).toBe(content);
  });
});
