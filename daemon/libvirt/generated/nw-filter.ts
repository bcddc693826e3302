// GENERATED from org.libvirt.NWFilter.xml by daemon/libvirt/codegen/generate.ts - do not edit; run `npm run gen:libvirt`.
// Typed methods, properties and signal payloads for bindInterface() in ../dbus-bind.ts.
// dbus-bind's InterfaceSpec, aliased: org.libvirt.Interface itself generates an InterfaceSpec.
import type { InterfaceSpec as Spec } from '../dbus-bind.js';

/** Methods of org.libvirt.NWFilter. */
export interface NWFilterMethods {
  /** See https://libvirt.org/html/libvirt-libvirt-nwfilter.html#virNWFilterGetXMLDesc */
  GetXMLDesc(flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-nwfilter.html#virNWFilterUndefine */
  Undefine(): Promise<void>;
}

/** Properties of org.libvirt.NWFilter. */
export interface NWFilterProperties {
  /** See https://libvirt.org/html/libvirt-libvirt-nwfilter.html#virNWFilterGetName */
  readonly Name: string;
  /** See https://libvirt.org/html/libvirt-libvirt-nwfilter.html#virNWFilterGetUUIDString */
  readonly UUID: string;
}

/** Signal payloads of org.libvirt.NWFilter, as the tuple dbus-next passes. */
export interface NWFilterSignals {
}

export const NWFilterSpec: Spec<NWFilterMethods, NWFilterProperties, NWFilterSignals> = {
  name: 'org.libvirt.NWFilter',
  methods: {
    GetXMLDesc: ['u', 's'],
    Undefine: ['', ''],
  },
  properties: {
    Name: ['s', 'read'],
    UUID: ['s', 'read'],
  },
  signals: {
  },
};
