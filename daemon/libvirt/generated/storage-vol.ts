// GENERATED from org.libvirt.StorageVol.xml by daemon/libvirt/codegen/generate.ts - do not edit; run `npm run gen:libvirt`.
// Typed methods, properties and signal payloads for bindInterface() in ../dbus-bind.ts.
// dbus-bind's InterfaceSpec, aliased: org.libvirt.Interface itself generates an InterfaceSpec.
import type { InterfaceSpec as Spec } from '../dbus-bind.js';

/** Methods of org.libvirt.StorageVol. */
export interface StorageVolMethods {
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolDelete */
  Delete(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolGetInfoFlags */
  GetInfo(flags: number): Promise<[number, bigint, bigint]>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolGetXMLDesc */
  GetXMLDesc(flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolResize */
  Resize(capacity: bigint, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolWipePattern */
  Wipe(pattern: number, flags: number): Promise<void>;
}

/** Properties of org.libvirt.StorageVol. */
export interface StorageVolProperties {
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolGetName */
  readonly Name: string;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolGetKey */
  readonly Key: string;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolGetPath */
  readonly Path: string;
}

/** Signal payloads of org.libvirt.StorageVol, as the tuple dbus-next passes. */
export interface StorageVolSignals {
}

export const StorageVolSpec: Spec<StorageVolMethods, StorageVolProperties, StorageVolSignals> = {
  name: 'org.libvirt.StorageVol',
  methods: {
    Delete: ['u', ''],
    GetInfo: ['u', '(itt)'],
    GetXMLDesc: ['u', 's'],
    Resize: ['tu', ''],
    Wipe: ['uu', ''],
  },
  properties: {
    Name: ['s', 'read'],
    Key: ['s', 'read'],
    Path: ['s', 'read'],
  },
  signals: {
  },
};
