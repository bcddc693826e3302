// GENERATED from org.libvirt.Domain.xml by daemon/libvirt/codegen/generate.ts - do not edit; run `npm run gen:libvirt`.
// Typed methods, properties and signal payloads for bindInterface() in ../dbus-bind.ts.
import type { Variant } from 'dbus-next';
// dbus-bind's InterfaceSpec, aliased: org.libvirt.Interface itself generates an InterfaceSpec.
import type { InterfaceSpec as Spec } from '../dbus-bind.js';

/** Methods of org.libvirt.Domain. */
export interface DomainMethods {
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainAbortJob */
  AbortJob(): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainAddIOThread */
  AddIOThread(iothreadId: number, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainAttachDeviceFlags */
  AttachDevice(xml: string, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainBlockCommit */
  BlockCommit(disk: string, base: string, top: string, bandwidth: bigint, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainBlockCopy */
  BlockCopy(disk: string, destxml: string, params: Record<string, Variant>, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainBlockJobAbort */
  BlockJobAbort(disk: string, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainBlockPeek */
  BlockPeek(disk: string, offset: bigint, size: bigint, flags: number): Promise<Buffer>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainBlockPull */
  BlockPull(disk: string, bandwidth: bigint, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainBlockRebase Empty string can be used to pass a NULL as @base argument. */
  BlockRebase(disk: string, base: string, bandwidth: bigint, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainBlockResize */
  BlockResize(disk: string, size: bigint, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainBlockJobSetSpeed */
  BlockJobSetSpeed(disk: string, bandwidth: bigint, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainCoreDumpWithFormat */
  CoreDump(to: string, dumpformat: number, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainCreateWithFlags */
  Create(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainCreateWithFiles */
  CreateWithFiles(files: number[], flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainDelIOThread */
  DelIOThread(iothreadId: number, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainDestroyFlags */
  Destroy(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainDetachDeviceFlags */
  DetachDevice(xml: string, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainFSFreeze */
  FSFreeze(mountpoints: string[], flags: number): Promise<number>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainFSThaw */
  FSThaw(mountpoints: string[], flags: number): Promise<number>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainFSTrim Empty string can be used to pass a NULL as @mountpoint argument. */
  FSTrim(mountpoint: string, minimum: bigint, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetBlkioParameters */
  GetBlockIOParameters(flags: number): Promise<Record<string, Variant>>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetBlockIoTune */
  GetBlockIOTune(disk: string, flags: number): Promise<Record<string, Variant>>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetBlockJobInfo */
  GetBlockJobInfo(disk: string, flags: number): Promise<[number, bigint, bigint, bigint]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetControlInfo */
  GetControlInfo(flags: number): Promise<[number, number, bigint]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetDiskErrors */
  GetDiskErrors(flags: number): Promise<[string, number][]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetEmulatorPinInfo */
  GetEmulatorPinInfo(flags: number): Promise<boolean[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetFSInfo */
  GetFSInfo(flags: number): Promise<[string, string, string, string[]][]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetGuestVcpus */
  GetGuestVcpus(flags: number): Promise<Record<string, Variant>>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetHostname */
  GetHostname(flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetInterfaceParameters */
  GetInterfaceParameters(device: string, flags: number): Promise<Record<string, Variant>>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetIOThreadInfo */
  GetIOThreadInfo(flags: number): Promise<[number, boolean[]][]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetJobInfo */
  GetJobInfo(): Promise<[number, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetJobStats */
  GetJobStats(flags: number): Promise<[number, Record<string, Variant>]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetMemoryParameters */
  GetMemoryParameters(flags: number): Promise<Record<string, Variant>>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetMetadata Empty string can be used to pass a NULL as @uri argument. */
  GetMetadata(type: number, uri: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetNumaParameters */
  GetNumaParameters(flags: number): Promise<Record<string, Variant>>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetPerfEvents */
  GetPerfEvents(flags: number): Promise<Record<string, Variant>>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetSchedulerParametersFlags */
  GetSchedulerParameters(flags: number): Promise<Record<string, Variant>>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetSecurityLabelList */
  GetSecurityLabelList(): Promise<[string, boolean][]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetState */
  GetState(flags: number): Promise<[number, number]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainListGetStats */
  GetStats(stats: number, flags: number): Promise<Record<string, Variant>>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetTime */
  GetTime(flags: number): Promise<[bigint, number]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetVcpuPinInfo */
  GetVcpuPinInfo(flags: number): Promise<boolean[][]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetVcpusFlags */
  GetVcpus(flags: number): Promise<number>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetXMLDesc */
  GetXMLDesc(flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainHasManagedSaveImage */
  HasManagedSaveImage(flags: number): Promise<boolean>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainInjectNMI */
  InjectNMI(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainInterfaceAddresses */
  InterfaceAddresses(source: number, flags: number): Promise<[string, string, [number, string, number][]][]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain-snapshot.html#virDomainListAllSnapshots */
  ListDomainSnapshots(flags: number): Promise<string[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainManagedSave */
  ManagedSave(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainManagedSaveRemove */
  ManagedSaveRemove(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainMemoryPeek */
  MemoryPeek(offset: bigint, size: bigint, flags: number): Promise<Buffer>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainMemoryStats */
  MemoryStats(flags: number): Promise<Record<number, bigint>>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainMigrateGetCompressionCache */
  MigrateGetCompressionCache(flags: number): Promise<bigint>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainMigrateGetMaxSpeed */
  MigrateGetMaxSpeed(flags: number): Promise<bigint>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainMigrateSetCompressionCache */
  MigrateSetCompressionCache(cacheSize: bigint, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainMigrateSetMaxDowntime */
  MigrateSetMaxDowntime(downtime: bigint, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainMigrateSetMaxSpeed */
  MigrateSetMaxSpeed(bandwidth: bigint, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainMigrateStartPostCopy */
  MigrateStartPostCopy(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainMigrateToURI3 */
  MigrateToURI3(dconuri: string, params: Record<string, Variant>, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainOpenGraphicsFD */
  OpenGraphicsFD(idx: number, flags: number): Promise<number>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainPinEmulator */
  PinEmulator(cpumap: boolean[], flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainPinIOThread */
  PinIOThread(iothreadId: number, cpumap: boolean[], flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainPinVcpuFlags */
  PinVcpu(vcpu: number, cpumap: boolean[], flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainPMWakeup */
  PMWakeup(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainReboot */
  Reboot(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainRename */
  Rename(name: string, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainReset */
  Reset(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainResume */
  Resume(): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSaveFlags Empty string can be used to pass a NULL as @xml argument. */
  Save(to: string, xml: string, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSendKey */
  SendKey(codeset: number, holdtime: number, keycodes: number[], flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSendProcessSignal */
  SendProcessSignal(pidValue: bigint, sigNum: number, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetBlkioParameters */
  SetBlockIOParameters(params: Record<string, Variant>, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetBlockIoTune */
  SetBlockIOTune(disk: string, params: Record<string, Variant>, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetGuestVcpus */
  SetGuestVcpus(vcpumap: boolean[], state: number, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetInterfaceParameters */
  SetInterfaceParameters(device: string, params: Record<string, Variant>, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetMemoryFlags */
  SetMemory(memory: bigint, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetMemoryParameters */
  SetMemoryParameters(params: Record<string, Variant>, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetMemoryStatsPeriod */
  SetMemoryStatsPeriod(period: number, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetMetadata Empty string can be used to pass a NULL as @key or @uri argument. */
  SetMetadata(type: number, metadata: string, key: string, uri: string, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetNumaParameters */
  SetNumaParameters(params: Record<string, Variant>, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetPerfEvents */
  SetPerfEvents(params: Record<string, Variant>, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetSchedulerParametersFlags */
  SetSchedulerParameters(params: Record<string, Variant>, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetUserPassword */
  SetUserPassword(user: string, password: string, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetTime */
  SetTime(seconds: bigint, nseconds: number, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetVcpusFlags */
  SetVcpus(vcpus: number, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainShutdownFlags */
  Shutdown(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain-snapshot.html#virDomainSnapshotCurrent */
  SnapshotCurrent(flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain-snapshot.html#virDomainSnapshotCreateXML */
  SnapshotCreateXML(xml: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain-snapshot.html#virDomainSnapshotLookupByName */
  SnapshotLookupByName(name: string, flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSuspend */
  Suspend(): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainUndefineFlags */
  Undefine(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainUpdateDeviceFlags */
  UpdateDevice(xml: string, flags: number): Promise<void>;
}

/** Properties of org.libvirt.Domain. */
export interface DomainProperties {
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainIsActive */
  readonly Active: boolean;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetAutostart and https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainSetAutostart */
  Autostart: boolean;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetID */
  readonly Id: number;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetName */
  readonly Name: string;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetOSType */
  readonly OSType: string;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainIsPersistent */
  readonly Persistent: boolean;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetSchedulerType */
  readonly SchedulerType: [string, number];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainIsUpdated */
  readonly Updated: boolean;
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainGetUUIDString */
  readonly UUID: string;
}

/** Signal payloads of org.libvirt.Domain, as the tuple dbus-next passes. */
export interface DomainSignals {
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventAgentLifecycleCallback */
  AgentEvent: [state: number, reason: number];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventBalloonChangeCallback */
  BalloonChange: [actual: bigint];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventBlockJobCallback Callback was registered using VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2 */
  BlockJob: [disk: string, type: number, status: number];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventGenericCallback */
  ControlError: [];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventDeviceAddedCallback */
  DeviceAdded: [device: string];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventDeviceRemovalFailedCallback */
  DeviceRemovalFailed: [device: string];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventDeviceRemovedCallback */
  DeviceRemoved: [device: string];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventDiskChangeCallback */
  DiskChange: [oldSrcPath: string, newSrcPath: string, device: string, reason: number];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventGraphicsCallback */
  Graphics: [phase: number, local: [number, string, string], remote: [number, string, string], authScheme: string, identities: [string, string][]];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventIOErrorReasonCallback */
  IOError: [srcPath: string, device: string, action: number, reason: string];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventJobCompletedCallback */
  JobCompleted: [params: Record<string, Variant>];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventMetadataChangeCallback */
  MetadataChange: [type: number, nsuri: string];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventMigrationIterationCallback */
  MigrationIteration: [iteration: number];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventPMSuspendCallback */
  PMSuspend: [reason: number];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventPMSuspendDiskCallback */
  PMSuspendDisk: [reason: number];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventPMWakeupCallback */
  PMWakeup: [reason: number];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventGenericCallback */
  Reboot: [];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventRTCChangeCallback */
  RTCChange: [utcoffset: bigint];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventTrayChangeCallback */
  TrayChange: [device: string, reason: number];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventTunableCallback */
  Tunable: [params: Record<string, Variant>];
  /** See https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventWatchdogCallback */
  Watchdog: [action: number];
}

export const DomainSpec: Spec<DomainMethods, DomainProperties, DomainSignals> = {
  name: 'org.libvirt.Domain',
  methods: {
    AbortJob: ['', ''],
    AddIOThread: ['uu', ''],
    AttachDevice: ['su', ''],
    BlockCommit: ['ssstu', ''],
    BlockCopy: ['ssa{sv}u', ''],
    BlockJobAbort: ['su', ''],
    BlockPeek: ['sttu', 'ay'],
    BlockPull: ['stu', ''],
    BlockRebase: ['sstu', ''],
    BlockResize: ['stu', ''],
    BlockJobSetSpeed: ['stu', ''],
    CoreDump: ['suu', ''],
    Create: ['u', ''],
    CreateWithFiles: ['ahu', ''],
    DelIOThread: ['uu', ''],
    Destroy: ['u', ''],
    DetachDevice: ['su', ''],
    FSFreeze: ['asu', 'u'],
    FSThaw: ['asu', 'u'],
    FSTrim: ['stu', ''],
    GetBlockIOParameters: ['u', 'a{sv}'],
    GetBlockIOTune: ['su', 'a{sv}'],
    GetBlockJobInfo: ['su', '(ittt)'],
    GetControlInfo: ['u', '(uut)'],
    GetDiskErrors: ['u', 'a(si)'],
    GetEmulatorPinInfo: ['u', 'ab'],
    GetFSInfo: ['u', 'a(sssas)'],
    GetGuestVcpus: ['u', 'a{sv}'],
    GetHostname: ['u', 's'],
    GetInterfaceParameters: ['su', 'a{sv}'],
    GetIOThreadInfo: ['u', 'a(uab)'],
    GetJobInfo: ['', '(ittttttttttt)'],
    GetJobStats: ['u', '(ia{sv})'],
    GetMemoryParameters: ['u', 'a{sv}'],
    GetMetadata: ['isu', 's'],
    GetNumaParameters: ['u', 'a{sv}'],
    GetPerfEvents: ['u', 'a{sv}'],
    GetSchedulerParameters: ['u', 'a{sv}'],
    GetSecurityLabelList: ['', 'a(sb)'],
    GetState: ['u', '(ii)'],
    GetStats: ['uu', 'a{sv}'],
    GetTime: ['u', '(tu)'],
    GetVcpuPinInfo: ['u', 'aab'],
    GetVcpus: ['u', 'u'],
    GetXMLDesc: ['u', 's'],
    HasManagedSaveImage: ['u', 'b'],
    InjectNMI: ['u', ''],
    InterfaceAddresses: ['uu', 'a(ssa(isu))'],
    ListDomainSnapshots: ['u', 'ao'],
    ManagedSave: ['u', ''],
    ManagedSaveRemove: ['u', ''],
    MemoryPeek: ['ttu', 'ay'],
    MemoryStats: ['u', 'a{it}'],
    MigrateGetCompressionCache: ['u', 't'],
    MigrateGetMaxSpeed: ['u', 't'],
    MigrateSetCompressionCache: ['tu', ''],
    MigrateSetMaxDowntime: ['tu', ''],
    MigrateSetMaxSpeed: ['tu', ''],
    MigrateStartPostCopy: ['u', ''],
    MigrateToURI3: ['sa{sv}u', ''],
    OpenGraphicsFD: ['uu', 'h'],
    PinEmulator: ['abu', ''],
    PinIOThread: ['uabu', ''],
    PinVcpu: ['uabu', ''],
    PMWakeup: ['u', ''],
    Reboot: ['u', ''],
    Rename: ['su', ''],
    Reset: ['u', ''],
    Resume: ['', ''],
    Save: ['ssu', ''],
    SendKey: ['uuauu', ''],
    SendProcessSignal: ['xuu', ''],
    SetBlockIOParameters: ['a{sv}u', ''],
    SetBlockIOTune: ['sa{sv}u', ''],
    SetGuestVcpus: ['abiu', ''],
    SetInterfaceParameters: ['sa{sv}u', ''],
    SetMemory: ['tu', ''],
    SetMemoryParameters: ['a{sv}u', ''],
    SetMemoryStatsPeriod: ['iu', ''],
    SetMetadata: ['isssu', ''],
    SetNumaParameters: ['a{sv}u', ''],
    SetPerfEvents: ['a{sv}u', ''],
    SetSchedulerParameters: ['a{sv}u', ''],
    SetUserPassword: ['ssu', ''],
    SetTime: ['tuu', ''],
    SetVcpus: ['uu', ''],
    Shutdown: ['u', ''],
    SnapshotCurrent: ['u', 'o'],
    SnapshotCreateXML: ['su', 'o'],
    SnapshotLookupByName: ['su', 'o'],
    Suspend: ['', ''],
    Undefine: ['u', ''],
    UpdateDevice: ['su', ''],
  },
  properties: {
    Active: ['b', 'read'],
    Autostart: ['b', 'readwrite'],
    Id: ['u', 'read'],
    Name: ['s', 'read'],
    OSType: ['s', 'read'],
    Persistent: ['b', 'read'],
    SchedulerType: ['(si)', 'read'],
    Updated: ['b', 'read'],
    UUID: ['s', 'read'],
  },
  signals: {
    AgentEvent: 'ii',
    BalloonChange: 't',
    BlockJob: 'sii',
    ControlError: '',
    DeviceAdded: 's',
    DeviceRemovalFailed: 's',
    DeviceRemoved: 's',
    DiskChange: 'sssi',
    Graphics: 'i(iss)(iss)sa(ss)',
    IOError: 'ssis',
    JobCompleted: 'a{sv}',
    MetadataChange: 'is',
    MigrationIteration: 'i',
    PMSuspend: 'i',
    PMSuspendDisk: 'i',
    PMWakeup: 'i',
    Reboot: '',
    RTCChange: 'x',
    TrayChange: 'si',
    Tunable: 'a{sv}',
    Watchdog: 'i',
  },
};
