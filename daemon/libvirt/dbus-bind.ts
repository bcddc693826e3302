// Runtime half of the generated wrappers: binds an interface description from generated/ to an object path,
// so `domain.GetState(0)` becomes one typed D-Bus call with the signature taken from the introspection XML.
import { Variant } from 'dbus-next';

/** What generated/*.ts emits per interface; the phantom `types` field carries the TS shapes to bindInterface. */
export interface InterfaceSpec<M = unknown, P = unknown, S = unknown> {
  readonly name: string;
  /** member -> [input signature, output signature] */
  readonly methods: Readonly<Record<string, readonly [string, string]>>;
  /** property -> [signature, access] */
  readonly properties: Readonly<Record<string, readonly [string, 'read' | 'write' | 'readwrite']>>;
  /** signal -> signature */
  readonly signals: Readonly<Record<string, string>>;
  readonly types?: { methods: M; properties: P; signals: S };
}

/**
 * The one primitive a binding needs: call `member` on `iface` at `path` and resolve with the reply body.
 * The libvirt client implements it (timeouts, no bus activation, error translation live there).
 */
export interface DBusCaller {
  call(path: string, iface: string, member: string, signature: string, body: unknown[]): Promise<unknown[]>;
}

export type MethodsOf<T> = T extends InterfaceSpec<infer M, unknown, unknown> ? M : never;
export type PropertiesOf<T> = T extends InterfaceSpec<unknown, infer P, unknown> ? P : never;
export type SignalsOf<T> = T extends InterfaceSpec<unknown, unknown, infer S> ? S : never;

export interface PropertyAccess<P> {
  getProperty<K extends keyof P & string>(name: K): Promise<P[K]>;
  /** Every readable property; libvirt-dbus omits them all for an object whose domain vanished. */
  getAllProperties(): Promise<Partial<P>>;
}

export type Bound<T extends InterfaceSpec> = MethodsOf<T> & PropertyAccess<PropertiesOf<T>> & { readonly path: string };

const PROPERTIES = 'org.freedesktop.DBus.Properties';

/** Counts the complete types in a signature ('a{sv}u' -> 2) to know whether a reply is one value or a tuple. */
export function countTypes(signature: string): number {
  let count = 0;
  let depth = 0;
  for (let i = 0; i < signature.length; i++) {
    const c = signature[i];
    if (c === '(' || c === '{') depth++;
    else if (c === ')' || c === '}') depth--;
    if (depth === 0 && c !== 'a') count++;
  }
  return count;
}

/** dbus-next hands variants through as Variant objects, and libvirt-dbus's GetAll nests them (v inside v). */
export function unwrapVariant(value: unknown): unknown {
  let v = value;
  while (v instanceof Variant) v = v.value;
  return v;
}

export function bindInterface<T extends InterfaceSpec>(caller: DBusCaller, path: string, spec: T): Bound<T> {
  const bound: Record<string, unknown> = {
    path,
    async getProperty(name: string): Promise<unknown> {
      const [value] = await caller.call(path, PROPERTIES, 'Get', 'ss', [spec.name, name]);
      return unwrapVariant(value);
    },
    async getAllProperties(): Promise<Record<string, unknown>> {
      const [dict] = await caller.call(path, PROPERTIES, 'GetAll', 's', [spec.name]);
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries((dict ?? {}) as Record<string, unknown>)) out[k] = unwrapVariant(v);
      return out;
    },
  };
  for (const [member, [inSig, outSig]] of Object.entries(spec.methods)) {
    const outCount = countTypes(outSig);
    bound[member] = async (...args: unknown[]): Promise<unknown> => {
      const body = await caller.call(path, spec.name, member, inSig, args);
      return outCount === 0 ? undefined : outCount === 1 ? body[0] : body;
    };
  }
  return bound as Bound<T>;
}

/** Types a signal body against the generated signal table once its member name is known. */
export function isSignal<T extends InterfaceSpec, K extends keyof SignalsOf<T> & string>(
  spec: T,
  member: K,
  iface: string | undefined,
  name: string | undefined,
  signature: string | undefined,
  _body: unknown[],
): _body is SignalsOf<T>[K] & unknown[] {
  return iface === spec.name && name === member && signature === spec.signals[member];
}
