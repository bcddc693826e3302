// The small XML reader: structure, entities, the constructs introspection and domain XML use, and rejection.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { child, children, escapeXml, parseXml, XmlParseError } from '../../../daemon/libvirt/xml.js';

describe('parseXml', () => {
  it('reads elements, attributes, text and skips prolog, doctype, comments', () => {
    const doc = parseXml(`<?xml version="1.0"?>
<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<!-- a comment with <tags> -->
<node name="/x"><interface name='a.b'>
  <method name="M"><arg type="a{sv}" direction="in"/></method>
  <annotation name="doc" value="multi
     line &amp; &lt;escaped&gt; &#65;&#x42;"/>
</interface><text>a &quot;q&quot; <![CDATA[<raw>&amp;]]> b</text></node>`);
    expect(doc.name).toBe('node');
    expect(doc.attrs).toEqual({ name: '/x' });
    const iface = child(doc, 'interface')!;
    expect(iface.attrs.name).toBe('a.b');
    expect(children(iface, 'method')[0]!.children[0]!.attrs).toEqual({ type: 'a{sv}', direction: 'in' });
    expect(child(iface, 'annotation')!.attrs.value).toBe('multi\n     line & <escaped> AB');
    expect(child(doc, 'text')!.text).toBe('a "q" <raw>&amp; b');
  });

  it.each([
    ['<a>', /unclosed/],
    ['<a></b>', /mismatched/],
    ['<a/><b/>', /more than one root/],
    ['<a x=1/>', /quoted/],
    ['<a x="1" x="2"/>', /duplicate/],
    ['<a>&bogus;</a>', /entity/],
    ['', /no root/],
    ['text<a/>', /outside/],
  ])('rejects %j', (src, msg) => {
    expect(() => parseXml(src)).toThrow(XmlParseError);
    expect(() => parseXml(src)).toThrow(msg);
  });

  it('round-trips any escaped text and attribute value', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (text, attr) => {
        // XML 1.0 cannot carry most C0 controls or lone surrogates; those never reach our XML builders.
        fc.pre(!/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ud800-\udfff]/.test(text + attr));
        const el = parseXml(`<e a="${escapeXml(attr)}">${escapeXml(text)}</e>`);
        expect(el.text).toBe(text);
        expect(el.attrs.a).toBe(attr);
      }),
    );
  });
});
