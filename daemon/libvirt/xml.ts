// A small, strict XML reader and escaper for the documents this adapter handles (D-Bus introspection data,
// libvirt domain XML): elements, attributes, text, entities, comments, CDATA; no DTD processing.

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  /** Concatenated character data directly inside this element (entities decoded, not trimmed). */
  text: string;
}

const NAME = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
const SPACE = /\s*/y;

export class XmlParseError extends Error {
  constructor(message: string, readonly offset: number) {
    super(`${message} at offset ${offset}`);
    this.name = 'XmlParseError';
  }
}

function decodeEntities(raw: string, offset: number): string {
  return raw.replace(/&([^;&\s]*);/g, (_m, ent: string) => {
    switch (ent) {
      case 'lt': return '<';
      case 'gt': return '>';
      case 'amp': return '&';
      case 'quot': return '"';
      case 'apos': return "'";
    }
    const code = ent.startsWith('#x') ? Number.parseInt(ent.slice(2), 16) : ent.startsWith('#') ? Number.parseInt(ent.slice(1), 10) : Number.NaN;
    if (!Number.isInteger(code) || code < 0 || code > 0x10ffff) throw new XmlParseError(`unknown entity &${ent};`, offset);
    return String.fromCodePoint(code);
  });
}

/** Parses a whole document and returns its root element; throws XmlParseError on malformed input. */
export function parseXml(source: string): XmlElement {
  let pos = 0;
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;

  const skip = (terminator: string, what: string): void => {
    const end = source.indexOf(terminator, pos);
    if (end < 0) throw new XmlParseError(`unterminated ${what}`, pos);
    pos = end + terminator.length;
  };
  const readName = (): string => {
    NAME.lastIndex = pos;
    const m = NAME.exec(source);
    if (!m) throw new XmlParseError('expected a name', pos);
    pos = NAME.lastIndex;
    return m[0];
  };
  const skipSpace = (): void => {
    SPACE.lastIndex = pos;
    SPACE.exec(source);
    pos = SPACE.lastIndex;
  };

  while (pos < source.length) {
    const lt = source.indexOf('<', pos);
    const textEnd = lt < 0 ? source.length : lt;
    if (textEnd > pos) {
      const raw = source.slice(pos, textEnd);
      const top = stack[stack.length - 1];
      if (top) top.text += decodeEntities(raw, pos);
      else if (raw.trim() !== '') throw new XmlParseError('text outside the root element', pos);
      pos = textEnd;
      continue;
    }
    if (source.startsWith('<?', pos)) { skip('?>', 'processing instruction'); continue; }
    if (source.startsWith('<!--', pos)) { skip('-->', 'comment'); continue; }
    if (source.startsWith('<![CDATA[', pos)) {
      const end = source.indexOf(']]>', pos);
      if (end < 0) throw new XmlParseError('unterminated CDATA', pos);
      const top = stack[stack.length - 1];
      if (!top) throw new XmlParseError('CDATA outside the root element', pos);
      top.text += source.slice(pos + 9, end);
      pos = end + 3;
      continue;
    }
    if (source.startsWith('<!', pos)) {
      // DOCTYPE: an internal subset in brackets may contain '>', so skip it as a unit.
      const bracket = source.indexOf('[', pos);
      const close = source.indexOf('>', pos);
      if (close < 0) throw new XmlParseError('unterminated declaration', pos);
      if (bracket >= 0 && bracket < close) { pos = bracket; skip(']', 'internal subset'); skip('>', 'declaration'); }
      else pos = close + 1;
      continue;
    }
    if (source.startsWith('</', pos)) {
      pos += 2;
      const name = readName();
      skipSpace();
      if (source[pos] !== '>') throw new XmlParseError(`expected '>' after </${name}`, pos);
      pos++;
      const open = stack.pop();
      if (!open || open.name !== name) throw new XmlParseError(`mismatched </${name}>`, pos);
      continue;
    }
    pos++;
    const el: XmlElement = { name: readName(), attrs: {}, children: [], text: '' };
    for (;;) {
      skipSpace();
      if (source.startsWith('/>', pos)) { pos += 2; break; }
      if (source[pos] === '>') { pos++; stack.push(el); break; }
      if (pos >= source.length) throw new XmlParseError(`unterminated <${el.name}>`, pos);
      const attr = readName();
      skipSpace();
      if (source[pos] !== '=') throw new XmlParseError(`expected '=' after attribute ${attr}`, pos);
      pos++;
      skipSpace();
      const quote = source[pos];
      if (quote !== '"' && quote !== "'") throw new XmlParseError(`expected a quoted value for ${attr}`, pos);
      const end = source.indexOf(quote, pos + 1);
      if (end < 0) throw new XmlParseError(`unterminated value for ${attr}`, pos);
      if (Object.hasOwn(el.attrs, attr)) throw new XmlParseError(`duplicate attribute ${attr}`, pos);
      el.attrs[attr] = decodeEntities(source.slice(pos + 1, end), pos);
      pos = end + 1;
    }
    const parent = stack[stack.length - (stack[stack.length - 1] === el ? 2 : 1)];
    if (parent) parent.children.push(el);
    else if (root) throw new XmlParseError('more than one root element', pos);
    else root = el;
  }
  if (stack.length > 0) throw new XmlParseError(`unclosed <${stack[stack.length - 1]!.name}>`, pos);
  if (!root) throw new XmlParseError('no root element', pos);
  return root;
}

/** First direct child with this name. */
export function child(el: XmlElement, name: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name);
}

/** All direct children with this name. */
export function children(el: XmlElement, name: string): XmlElement[] {
  return el.children.filter((c) => c.name === name);
}

/** Escapes a value for use in element text or a quoted attribute. */
export function escapeXml(value: string | number): string {
  return String(value).replace(/[<>&"']/g, (c) => (c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '&' ? '&amp;' : c === '"' ? '&quot;' : '&apos;'));
}
