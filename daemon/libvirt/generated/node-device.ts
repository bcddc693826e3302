// GENERATED from org.libvirt.NodeDevice.xml by daemon/libvirt/codegen/generate.ts - do not edit; run `npm run gen:libvirt`.
// Typed methods, properties and signal payloads for bindInterface() in ../dbus-bind.ts.
// dbus-bind's InterfaceSpec, aliased: org.libvirt.Interface itself generates an InterfaceSpec.
import type { InterfaceSpec as Spec } from '../dbus-bind.js';

/** Methods of org.libvirt.NodeDevice. */
export interface NodeDeviceMethods {
  /** See https://libvirt.org/html/libvirt-libvirt-nodedev.html#virNodeDeviceDestroy */
  Destroy(): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-nodedev.html#virNodeDeviceDetachFlags */
  Detach(driverName: string, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-nodedev.html#virNodeDeviceGetXMLDesc */
  GetXMLDesc(flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-nodedev.html#virNodeDeviceListCaps */
  ListCaps(): Promise<string[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-nodedev.html#virNodeDeviceReAttach */
  ReAttach(): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-nodedev.html#virNodeDeviceReset */
  Reset(): Promise<void>;
}

/** Properties of org.libvirt.NodeDevice. */
export interface NodeDeviceProperties {
  /** See https://libvirt.org/html/libvirt-libvirt-nodedev.html#virNodeDeviceGetName */
  readonly Name: string;
  /** See https://libvirt.org/html/libvirt-libvirt-nodedev.html#virNodeDeviceGetParent */
  readonly Parent: string;
}

/** Signal payloads of org.libvirt.NodeDevice, as the tuple dbus-next passes. */
export interface NodeDeviceSignals {
}

export const NodeDeviceSpec: Spec<NodeDeviceMethods, NodeDeviceProperties, NodeDeviceSignals> = {
  name: 'org.libvirt.NodeDevice',
  methods: {
    Destroy: ['', ''],
    Detach: ['su', ''],
    GetXMLDesc: ['u', 's'],
    ListCaps: ['', 'as'],
    ReAttach: ['', ''],
    Reset: ['', ''],
  },
  properties: {
    Name: ['s', 'read'],
    Parent: ['s', 'read'],
  },
  signals: {
  },
};
