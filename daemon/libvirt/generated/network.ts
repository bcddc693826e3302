// GENERATED from org.libvirt.Network.xml by daemon/libvirt/codegen/generate.ts - do not edit; run `npm run gen:libvirt`.
// Typed methods, properties and signal payloads for bindInterface() in ../dbus-bind.ts.
// dbus-bind's InterfaceSpec, aliased: org.libvirt.Interface itself generates an InterfaceSpec.
import type { InterfaceSpec as Spec } from '../dbus-bind.js';

/** Methods of org.libvirt.Network. */
export interface NetworkMethods {
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkCreate */
  Create(): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkDestroy */
  Destroy(): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkGetDHCPLeases Empty string can be used to pass a NULL as @mac argument. Empty string will be returned in output for NULL variables. */
  GetDHCPLeases(mac: string, flags: number): Promise<[string, bigint, number, string, string, string, number, string, string][]>;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkGetXMLDesc */
  GetXMLDesc(flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkUndefine */
  Undefine(): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkUpdate */
  Update(command: number, section: number, parentIndex: number, xml: string, flags: number): Promise<void>;
}

/** Properties of org.libvirt.Network. */
export interface NetworkProperties {
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkIsActive */
  readonly Active: boolean;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkGetAutostart and https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkSetAutostart */
  Autostart: boolean;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkGetName */
  readonly Name: string;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkIsPersistent */
  readonly Persistent: boolean;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkGetUUIDString */
  readonly UUID: string;
}

/** Signal payloads of org.libvirt.Network, as the tuple dbus-next passes. */
export interface NetworkSignals {
}

export const NetworkSpec: Spec<NetworkMethods, NetworkProperties, NetworkSignals> = {
  name: 'org.libvirt.Network',
  methods: {
    Create: ['', ''],
    Destroy: ['', ''],
    GetDHCPLeases: ['su', 'a(sxisssuss)'],
    GetXMLDesc: ['u', 's'],
    Undefine: ['', ''],
    Update: ['uuisu', ''],
  },
  properties: {
    Active: ['b', 'read'],
    Autostart: ['b', 'readwrite'],
    Name: ['s', 'read'],
    Persistent: ['b', 'read'],
    UUID: ['s', 'read'],
  },
  signals: {
  },
};
