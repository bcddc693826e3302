// Generates daemon/libvirt/generated/*.ts (typed method/property/signal tables) from the D-Bus introspection
// XML that libvirt-dbus installs. Pure `generate()` for the drift test; run as a script via `npm run gen:libvirt`.
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseXml, children, type XmlElement } from '../xml.js';

export const DEFAULT_XML_DIR = '/usr/share/dbus-1/interfaces';
const FILE_PATTERN = /^org\.libvirt\.[A-Za-z]+\.xml$/;

interface Arg { name: string; type: string; direction: 'in' | 'out' }
interface Member { name: string; doc: string | undefined }
interface Method extends Member { args: Arg[] }
interface Property extends Member { type: string; access: 'read' | 'write' | 'readwrite' }
interface Signal extends Member { args: Arg[] }
interface Iface { name: string; methods: Method[]; properties: Property[]; signals: Signal[] }

// --- signatures -------------------------------------------------------------------------------------------

type Sig =
  | { kind: 'basic'; code: string }
  | { kind: 'array'; elem: Sig }
  | { kind: 'dict'; key: Sig; value: Sig }
  | { kind: 'struct'; fields: Sig[] };

const BASIC = 'ybnqiuxtdsogvh';

/** Parses a D-Bus signature into complete types; throws on anything malformed. */
export function parseSignature(sig: string): Sig[] {
  let pos = 0;
  const one = (): Sig => {
    const c = sig[pos++];
    if (c === undefined) throw new Error(`truncated signature '${sig}'`);
    if (BASIC.includes(c)) return { kind: 'basic', code: c };
    if (c === 'a') {
      if (sig[pos] === '{') {
        pos++;
        const key = one();
        const value = one();
        if (sig[pos++] !== '}') throw new Error(`bad dict entry in '${sig}'`);
        return { kind: 'dict', key, value };
      }
      return { kind: 'array', elem: one() };
    }
    if (c === '(') {
      const fields: Sig[] = [];
      while (sig[pos] !== ')') {
        if (pos >= sig.length) throw new Error(`unterminated struct in '${sig}'`);
        fields.push(one());
      }
      pos++;
      return { kind: 'struct', fields };
    }
    throw new Error(`unknown type code '${c}' in '${sig}'`);
  };
  const out: Sig[] = [];
  while (pos < sig.length) out.push(one());
  return out;
}

/** The TS type dbus-next produces (and accepts) for a D-Bus type; 64-bit integers are bigint. */
export function tsType(s: Sig): string {
  switch (s.kind) {
    case 'basic':
      switch (s.code) {
        case 'y': case 'n': case 'q': case 'i': case 'u': case 'd': case 'h': return 'number';
        case 'x': case 't': return 'bigint';
        case 'b': return 'boolean';
        case 's': case 'o': case 'g': return 'string';
        case 'v': return 'Variant';
      }
      throw new Error(`unmapped basic type ${s.code}`);
    case 'array':
      // dbus-next reads and writes byte arrays as Buffers.
      if (s.elem.kind === 'basic' && s.elem.code === 'y') return 'Buffer';
      return `${wrap(tsType(s.elem))}[]`;
    case 'dict':
      return `Record<${tsType(s.key) === 'string' ? 'string' : 'number'}, ${tsType(s.value)}>`;
    case 'struct':
      return `[${s.fields.map(tsType).join(', ')}]`;
  }
}

function wrap(t: string): string {
  // Only unions would need parentheses before []; keep simple names, arrays, tuples and Records bare.
  return /^[A-Za-z]+(\[\])*$/.test(t) || t.startsWith('[') || t.startsWith('Record<') ? t : `(${t})`;
}

function sigType(sig: string): string {
  const parsed = parseSignature(sig);
  if (parsed.length !== 1) throw new Error(`expected one complete type, got '${sig}'`);
  return tsType(parsed[0]!);
}

// --- introspection ----------------------------------------------------------------------------------------

function docOf(el: XmlElement): string | undefined {
  const a = children(el, 'annotation').find((x) => x.attrs.name === 'org.gtk.GDBus.DocString');
  return a?.attrs.value?.replace(/\s+/g, ' ').trim();
}

function argsOf(el: XmlElement, defaultDirection: 'in' | 'out'): Arg[] {
  return children(el, 'arg').map((a, i) => {
    const type = a.attrs.type;
    if (!type) throw new Error(`arg ${i} of ${el.attrs.name} has no type`);
    parseSignature(type);
    const direction = a.attrs.direction === 'out' ? 'out' : a.attrs.direction === 'in' ? 'in' : defaultDirection;
    return { name: a.attrs.name ?? `arg${i}`, type, direction };
  });
}

export function parseIntrospection(xml: string): Iface[] {
  const root = parseXml(xml);
  if (root.name !== 'node') throw new Error(`introspection root is <${root.name}>, expected <node>`);
  return children(root, 'interface').map((i) => ({
    name: required(i, 'name'),
    methods: children(i, 'method').map((m) => ({ name: required(m, 'name'), doc: docOf(m), args: argsOf(m, 'in') })),
    properties: children(i, 'property').map((p) => {
      const access = p.attrs.access;
      if (access !== 'read' && access !== 'write' && access !== 'readwrite') throw new Error(`property ${p.attrs.name}: bad access`);
      return { name: required(p, 'name'), doc: docOf(p), type: required(p, 'type'), access };
    }),
    signals: children(i, 'signal').map((s) => ({ name: required(s, 'name'), doc: docOf(s), args: argsOf(s, 'out') })),
  }));
}

function required(el: XmlElement, attr: string): string {
  const v = el.attrs[attr];
  if (!v) throw new Error(`<${el.name}> without ${attr}`);
  return v;
}

// --- emission ---------------------------------------------------------------------------------------------

const RESERVED = new Set(
  ('break case catch class const continue debugger default delete do else enum export extends false finally for ' +
    'function if implements import in instanceof interface let new null package private protected public return ' +
    'static super switch this throw true try typeof var void while with yield await arguments eval').split(' '),
);

function ident(name: string): string {
  const clean = name.replace(/[^A-Za-z0-9_$]/g, '_');
  return RESERVED.has(clean) || /^[0-9]/.test(clean) ? `${clean}_` : clean;
}

/** org.libvirt.StoragePool -> StoragePool; used for type names. */
function shortName(iface: string): string {
  return iface.slice(iface.lastIndexOf('.') + 1);
}

/** StoragePool -> storage-pool, NWFilter -> nw-filter; used for file names. */
export function kebab(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').replace(/([A-Z])([A-Z][a-z])/g, '$1-$2').toLowerCase();
}

function jsdoc(doc: string | undefined, indent: string): string[] {
  return doc ? [`${indent}/** ${doc.replace(/\*\//g, '*\\/')} */`] : [];
}

function emitInterface(iface: Iface, lines: string[]): boolean {
  const short = shortName(iface.name);
  let usesVariant = false;
  const t = (sig: string): string => {
    const ty = sigType(sig);
    if (/\bVariant\b/.test(ty)) usesVariant = true;
    return ty;
  };

  lines.push(`/** Methods of ${iface.name}. */`, `export interface ${short}Methods {`);
  for (const m of iface.methods) {
    const ins = m.args.filter((a) => a.direction === 'in');
    const outs = m.args.filter((a) => a.direction === 'out');
    const params = ins.map((a) => `${ident(a.name)}: ${t(a.type)}`).join(', ');
    const ret = outs.length === 0 ? 'void' : outs.length === 1 ? t(outs[0]!.type) : `[${outs.map((a) => `${ident(a.name)}: ${t(a.type)}`).join(', ')}]`;
    lines.push(...jsdoc(m.doc, '  '), `  ${m.name}(${params}): Promise<${ret}>;`);
  }
  lines.push('}', '');

  lines.push(`/** Properties of ${iface.name}. */`, `export interface ${short}Properties {`);
  for (const p of iface.properties) {
    lines.push(...jsdoc(p.doc, '  '), `  ${p.access === 'read' ? 'readonly ' : ''}${p.name}: ${t(p.type)};`);
  }
  lines.push('}', '');

  lines.push(`/** Signal payloads of ${iface.name}, as the tuple dbus-next passes. */`, `export interface ${short}Signals {`);
  for (const s of iface.signals) {
    lines.push(...jsdoc(s.doc, '  '), `  ${s.name}: [${s.args.map((a) => `${ident(a.name)}: ${t(a.type)}`).join(', ')}];`);
  }
  lines.push('}', '');

  const sigOf = (args: Arg[], dir: 'in' | 'out'): string => args.filter((a) => a.direction === dir).map((a) => a.type).join('');
  lines.push(
    `export const ${short}Spec: Spec<${short}Methods, ${short}Properties, ${short}Signals> = {`,
    `  name: '${iface.name}',`,
    '  methods: {',
    ...iface.methods.map((m) => `    ${m.name}: ['${sigOf(m.args, 'in')}', '${sigOf(m.args, 'out')}'],`),
    '  },',
    '  properties: {',
    ...iface.properties.map((p) => `    ${p.name}: ['${p.type}', '${p.access}'],`),
    '  },',
    '  signals: {',
    ...iface.signals.map((s) => `    ${s.name}: '${s.args.map((a) => a.type).join('')}',`),
    '  },',
    '};',
    '',
  );
  return usesVariant;
}

/** Maps output file name -> content for every org.libvirt.*.xml in xmlDir. Deterministic. */
export function generate(xmlDir: string = DEFAULT_XML_DIR): Map<string, string> {
  const files = readdirSync(xmlDir).filter((f) => FILE_PATTERN.test(f)).sort();
  if (files.length === 0) throw new Error(`no org.libvirt.*.xml in ${xmlDir}`);
  const out = new Map<string, string>();
  const index: string[] = [];
  for (const file of files) {
    const ifaces = parseIntrospection(readFileSync(join(xmlDir, file), 'utf8'));
    const body: string[] = [];
    let usesVariant = false;
    for (const iface of ifaces) usesVariant = emitInterface(iface, body) || usesVariant;
    const name = `${kebab(shortName(file.replace(/\.xml$/, '')))}.ts`;
    const header = [
      `// GENERATED from ${file} by daemon/libvirt/codegen/generate.ts - do not edit; run \`npm run gen:libvirt\`.`,
      '// Typed methods, properties and signal payloads for bindInterface() in ../dbus-bind.ts.',
      ...(usesVariant ? ["import type { Variant } from 'dbus-next';"] : []),
      "// dbus-bind's InterfaceSpec, aliased: org.libvirt.Interface itself generates an InterfaceSpec.",
      "import type { InterfaceSpec as Spec } from '../dbus-bind.js';",
      '',
    ];
    out.set(name, [...header, ...body].join('\n'));
    index.push(`export * from './${name.replace(/\.ts$/, '.js')}';`);
  }
  out.set(
    'index.ts',
    ['// GENERATED by daemon/libvirt/codegen/generate.ts - do not edit; run `npm run gen:libvirt`.', ...index, ''].join('\n'),
  );
  return out;
}

export function writeGenerated(outDir: string, files: Map<string, string>): void {
  mkdirSync(outDir, { recursive: true });
  for (const [name, content] of files) writeFileSync(join(outDir, name), content);
}

function main(argv: string[]): void {
  const opt = (flag: string, fallback: string): string => {
    const i = argv.indexOf(flag);
    return i >= 0 && argv[i + 1] ? argv[i + 1]! : fallback;
  };
  const xmlDir = opt('--xml-dir', DEFAULT_XML_DIR);
  const outDir = opt('--out', 'daemon/libvirt/generated');
  const files = generate(xmlDir);
  writeGenerated(outDir, files);
  process.stdout.write(`wrote ${files.size} files to ${outDir} from ${xmlDir}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main(process.argv.slice(2));

