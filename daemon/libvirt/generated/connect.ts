// GENERATED from org.libvirt.Connect.xml by daemon/libvirt/codegen/generate.ts - do not edit; run `npm run gen:libvirt`.
// Typed methods, properties and signal payloads for bindInterface() in ../dbus-bind.ts.
import type { Variant } from 'dbus-next';
// dbus-bind's InterfaceSpec, aliased: org.libvirt.Interface itself generates an InterfaceSpec.
import type { InterfaceSpec as Spec } from '../dbus-bind.js';

/** Methods of org.libvirt.Connect. */
export interface ConnectMethods {
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virConnectBaselineCPU */
  BaselineCPU(xmlCPUs: string[], flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virConnectCompareCPU */
  CompareCPU(xmlDesc: string, flags: number): Promise<number>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainCreateXML */
  DomainCreateXML(xml: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainCreateXMLWithFiles */
  DomainCreateXMLWithFiles(xml: string, files: number[], flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainDefineXML */
  DomainDefineXML(xml: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainLookupByID */
  DomainLookupByID(id: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainLookupByName */
  DomainLookupByName(name: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainLookupByUUIDString */
  DomainLookupByUUID(uuid: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainRestoreFlags Empty string can be used to pass a NULL as @xml argument. */
  DomainRestore(from: string, xml: string, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSaveImageDefineXML */
  DomainSaveImageDefineXML(file: string, xml: string, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSaveImageGetXMLDesc */
  DomainSaveImageGetXMLDesc(file: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virConnectFindStoragePoolSources Empty string can be used to pass a NULL as @srcSpec argument. */
  FindStoragePoolSources(type: string, srcSpec: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectGetAllDomainStats */
  GetAllDomainStats(stats: number, flags: number): Promise<[string, Record<string, Variant>][]>;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virConnectGetCapabilities */
  GetCapabilities(): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virConnectGetCPUModelNames */
  GetCPUModelNames(arch: string, flags: number): Promise<string[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectGetDomainCapabilities Empty string can be used to pass a NULL as @emulatorbin, @arch, @machine or @virttype argument. */
  GetDomainCapabilities(emulatorbin: string, arch: string, machine: string, virttype: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virConnectGetSysinfo */
  GetSysinfo(flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virInterfaceChangeBegin */
  InterfaceChangeBegin(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virInterfaceChangeCommit */
  InterfaceChangeCommit(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virInterfaceChangeRollback */
  InterfaceChangeRollback(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virInterfaceDefineXML */
  InterfaceDefineXML(xml: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virInterfaceLookupByMACString */
  InterfaceLookupByMAC(mac: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virInterfaceLookupByName */
  InterfaceLookupByName(name: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectListAllDomains */
  ListDomains(flags: number): Promise<string[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-interface.html#virConnectListAllInterfaces */
  ListInterfaces(flags: number): Promise<string[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virConnectListAllNetworks */
  ListNetworks(flags: number): Promise<string[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-nodedev.html#virConnectListAllNodeDevices */
  ListNodeDevices(flags: number): Promise<string[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-nwfilter.html#virConnectListAllNWFilters */
  ListNWFilters(flags: number): Promise<string[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-secret.html#virConnectListAllSecrets */
  ListSecrets(flags: number): Promise<string[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virConnectListAllStoragePools */
  ListStoragePools(flags: number): Promise<string[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkCreateXML */
  NetworkCreateXML(xml: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkDefineXML */
  NetworkDefineXML(xml: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkLookupByName */
  NetworkLookupByName(name: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virNetworkLookupByUUIDString */
  NetworkLookupByUUID(uuid: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-nodedev.html#virNodeDeviceCreateXML */
  NodeDeviceCreateXML(xml: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-nodedev.html#virNodeDeviceLookupByName */
  NodeDeviceLookupByName(name: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-nodedev.html#virNodeDeviceLookupSCSIHostByWWN */
  NodeDeviceLookupSCSIHostByWWN(wwnn: string, wwpn: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-nwfilter.html#virNWFilterDefineXML */
  NWFilterDefineXML(xml: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-nwfilter.html#virNWFilterLookupByName */
  NWFilterLookupByName(name: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-nwfilter.html#virNWFilterLookupByUUIDString */
  NWFilterLookupByUUID(uuid: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virNodeGetCPUMap */
  NodeGetCPUMap(flags: number): Promise<boolean[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virNodeGetCPUStats */
  NodeGetCPUStats(cpuNum: number, flags: number): Promise<Record<string, bigint>>;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virNodeGetFreeMemory */
  NodeGetFreeMemory(): Promise<bigint>;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virNodeGetMemoryParameters */
  NodeGetMemoryParameters(flags: number): Promise<Record<string, Variant>>;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virNodeGetMemoryStats */
  NodeGetMemoryStats(cellNum: number, flags: number): Promise<Record<string, bigint>>;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virNodeGetSecurityModel */
  NodeGetSecurityModel(): Promise<[string, string]>;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virNodeSetMemoryParameters */
  NodeSetMemoryParameters(params: Record<string, Variant>, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-secret.html#virSecretDefineXML */
  SecretDefineXML(xml: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-secret.html#virSecretLookupByUUIDString */
  SecretLookupByUUID(uuid: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-secret.html#virSecretLookupByUsage */
  SecretLookupByUsage(usageType: number, usageID: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolCreateXML */
  StoragePoolCreateXML(xml: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolDefineXML */
  StoragePoolDefineXML(xml: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolLookupByName */
  StoragePoolLookupByName(name: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStoragePoolLookupByUUIDString */
  StoragePoolLookupByUUID(uuid: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolLookupByKey */
  StorageVolLookupByKey(key: string): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolLookupByPath */
  StorageVolLookupByPath(path: string): Promise<string>;
}

/** Properties of org.libvirt.Connect. */
export interface ConnectProperties {
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virConnectIsEncrypted Note that monitoring of traffic on the D-Bus message bus is out of the scope of this property */
  readonly Encrypted: boolean;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virConnectGetHostname */
  readonly Hostname: string;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virConnectGetLibVersion */
  readonly LibVersion: bigint;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virConnectIsSecure Note that monitoring of traffic on the D-Bus message bus is out of the scope of this property */
  readonly Secure: boolean;
  /** See https://libvirt.org/html/libvirt-libvirt-host.html#virConnectGetVersion */
  readonly Version: bigint;
}

/** Signal payloads of org.libvirt.Connect, as the tuple dbus-next passes. */
export interface ConnectSignals {
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventCallback */
  DomainEvent: [domain: string, event: number, detail: number];
  /** See https://libvirt.org/html/libvirt-libvirt-network.html#virConnectNetworkEventLifecycleCallback */
  NetworkEvent: [network: string, event: number];
  /** See https://libvirt.org/html/libvirt-libvirt-nodedev.html#virConnectNodeDeviceEventLifecycleCallback */
  NodeDeviceEvent: [dev: string, event: number, detail: number];
  /** See https://libvirt.org/html/libvirt-libvirt-secret.html#virConnectSecretEventLifecycleCallback */
  SecretEvent: [secret: string, event: number, detail: number];
  /** See https://libvirt.org/html/libvirt-libvirt-storage.html#virConnectStoragePoolEventLifecycleCallback */
  StoragePoolEvent: [storagePool: string, event: number, detail: number];
}

export const ConnectSpec: Spec<ConnectMethods, ConnectProperties, ConnectSignals> = {
  name: 'org.libvirt.Connect',
  methods: {
    BaselineCPU: ['asu', 's'],
    CompareCPU: ['su', 'i'],
    DomainCreateXML: ['su', 'o'],
    DomainCreateXMLWithFiles: ['sahu', 'o'],
    DomainDefineXML: ['s', 'o'],
    DomainLookupByID: ['i', 'o'],
    DomainLookupByName: ['s', 'o'],
    DomainLookupByUUID: ['s', 'o'],
    DomainRestore: ['ssu', ''],
    DomainSaveImageDefineXML: ['ssu', ''],
    DomainSaveImageGetXMLDesc: ['su', 's'],
    FindStoragePoolSources: ['ssu', 's'],
    GetAllDomainStats: ['uu', 'a(sa{sv})'],
    GetCapabilities: ['', 's'],
    GetCPUModelNames: ['su', 'as'],
    GetDomainCapabilities: ['ssssu', 's'],
    GetSysinfo: ['u', 's'],
    InterfaceChangeBegin: ['u', ''],
    InterfaceChangeCommit: ['u', ''],
    InterfaceChangeRollback: ['u', ''],
    InterfaceDefineXML: ['su', 'o'],
    InterfaceLookupByMAC: ['s', 'o'],
    InterfaceLookupByName: ['s', 'o'],
    ListDomains: ['u', 'ao'],
    ListInterfaces: ['u', 'ao'],
    ListNetworks: ['u', 'ao'],
    ListNodeDevices: ['u', 'ao'],
    ListNWFilters: ['u', 'ao'],
    ListSecrets: ['u', 'ao'],
    ListStoragePools: ['u', 'ao'],
    NetworkCreateXML: ['s', 'o'],
    NetworkDefineXML: ['s', 'o'],
    NetworkLookupByName: ['s', 'o'],
    NetworkLookupByUUID: ['s', 'o'],
    NodeDeviceCreateXML: ['su', 'o'],
    NodeDeviceLookupByName: ['s', 'o'],
    NodeDeviceLookupSCSIHostByWWN: ['ssu', 'o'],
    NWFilterDefineXML: ['s', 'o'],
    NWFilterLookupByName: ['s', 'o'],
    NWFilterLookupByUUID: ['s', 'o'],
    NodeGetCPUMap: ['u', 'ab'],
    NodeGetCPUStats: ['iu', 'a{st}'],
    NodeGetFreeMemory: ['', 't'],
    NodeGetMemoryParameters: ['u', 'a{sv}'],
    NodeGetMemoryStats: ['iu', 'a{st}'],
    NodeGetSecurityModel: ['', '(ss)'],
    NodeSetMemoryParameters: ['a{sv}u', ''],
    SecretDefineXML: ['su', 'o'],
    SecretLookupByUUID: ['s', 'o'],
    SecretLookupByUsage: ['is', 'o'],
    StoragePoolCreateXML: ['su', 'o'],
    StoragePoolDefineXML: ['su', 'o'],
    StoragePoolLookupByName: ['s', 'o'],
    StoragePoolLookupByUUID: ['s', 'o'],
    StorageVolLookupByKey: ['s', 'o'],
    StorageVolLookupByPath: ['s', 'o'],
  },
  properties: {
    Encrypted: ['b', 'read'],
    Hostname: ['s', 'read'],
    LibVersion: ['t', 'read'],
    Secure: ['b', 'read'],
    Version: ['t', 'read'],
  },
  signals: {
    DomainEvent: 'oii',
    NetworkEvent: 'oi',
    NodeDeviceEvent: 'oii',
    SecretEvent: 'oii',
    StoragePoolEvent: 'oii',
  },
};
