// GENERATED from org.libvirt.StoragePool.xml by daemon/libvirt/codegen/generate.ts - do not edit; run `npm run gen:libvirt`.
// Typed methods, properties and signal payloads for bindInterface() in ../dbus-bind.ts.
// dbus-bind's InterfaceSpec, aliased: org.libvirt.Interface itself generates an InterfaceSpec.
import type { InterfaceSpec as Spec } from '../dbus-bind.js';

/** Methods of org.libvirt.StoragePool. */
export interface StoragePoolMethods {
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolBuild */
  Build(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolCreate */
  Create(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolDelete */
  Delete(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolDestroy */
  Destroy(): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolGetInfo */
  GetInfo(): Promise<[number, bigint, bigint, bigint]>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolGetXMLDesc */
  GetXMLDesc(flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolListAllVolumes */
  ListStorageVolumes(flags: number): Promise<string[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolRefresh */
  Refresh(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolCreateXML */
  StorageVolCreateXML(xml: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolCreateXMLFrom Call with @key argument set to the key of the storage volume to be cloned. */
  StorageVolCreateXMLFrom(xml: string, key: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolLookupByName */
  StorageVolLookupByName(name: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolUndefine */
  Undefine(): Promise<void>;
}

/** Properties of org.libvirt.StoragePool. */
export interface StoragePoolProperties {
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolIsActive */
  readonly Active: boolean;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolGetAutostart https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolSetAutostart */
  Autostart: boolean;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolGetName */
  readonly Name: string;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolIsPersistent */
  readonly Persistent: boolean;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolGetUUIDString */
  readonly UUID: string;
}

/** Signal payloads of org.libvirt.StoragePool, as the tuple dbus-next passes. */
export interface StoragePoolSignals {
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virConnectStoragePoolEventGenericCallback */
  Refresh: [];
}

export const StoragePoolSpec: Spec<StoragePoolMethods, StoragePoolProperties, StoragePoolSignals> = {
  name: 'org.libvirt.StoragePool',
  methods: {
    Build: ['u', ''],
    Create: ['u', ''],
    Delete: ['u', ''],
    Destroy: ['', ''],
    GetInfo: ['', '(ittt)'],
    GetXMLDesc: ['u', 's'],
    ListStorageVolumes: ['u', 'ao'],
    Refresh: ['u', ''],
    StorageVolCreateXML: ['su', 'o'],
    StorageVolCreateXMLFrom: ['ssu', 'o'],
    StorageVolLookupByName: ['s', 'o'],
    Undefine: ['', ''],
  },
  properties: {
    Active: ['b', 'read'],
    Autostart: ['b', 'readwrite'],
    Name: ['s', 'read'],
    Persistent: ['b', 'read'],
    UUID: ['s', 'read'],
  },
  signals: {
    Refresh: '',
  },
};
