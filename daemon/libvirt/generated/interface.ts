// GENERATED from org.libvirt.Interface.xml by daemon/libvirt/codegen/generate.ts - do not edit; run `npm run gen:libvirt`.
// Typed methods, properties and signal payloads for bindInterface() in ../dbus-bind.ts.
// dbus-bind's InterfaceSpec, aliased: org.libvirt.Interface itself generates an InterfaceSpec.
import type { InterfaceSpec as Spec } from '../dbus-bind.js';

/** Methods of org.libvirt.Interface. */
export interface InterfaceMethods {
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virInterfaceCreate */
  Create(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virInterfaceDestroy */
  Destroy(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virInterfaceGetXMLDesc */
  GetXMLDesc(flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virInterfaceUndefine */
  Undefine(): Promise<void>;
}

/** Properties of org.libvirt.Interface. */
export interface InterfaceProperties {
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virInterfaceIsActive */
  readonly Active: boolean;
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virInterfaceGetMACString */
  readonly MAC: string;
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virInterfaceGetName */
  readonly Name: string;
}

/** Signal payloads of org.libvirt.Interface, as the tuple dbus-next passes. */
export interface InterfaceSignals {
}

export const InterfaceSpec: Spec<InterfaceMethods, InterfaceProperties, InterfaceSignals> = {
  name: 'org.libvirt.Interface',
  methods: {
    Create: ['u', ''],
    Destroy: ['u', ''],
    GetXMLDesc: ['u', 's'],
    Undefine: ['', ''],
  },
  properties: {
    Active: ['b', 'read'],
    MAC: ['s', 'read'],
    Name: ['s', 'read'],
  },
  signals: {
  },
};
