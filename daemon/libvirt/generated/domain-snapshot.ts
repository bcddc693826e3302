// GENERATED from org.libvirt.DomainSnapshot.xml by daemon/libvirt/codegen/generate.ts - do not edit; run `npm run gen:libvirt`.
// Typed methods, properties and signal payloads for bindInterface() in ../dbus-bind.ts.
// dbus-bind's InterfaceSpec, aliased: org.libvirt.Interface itself generates an InterfaceSpec.
import type { InterfaceSpec as Spec } from '../dbus-bind.js';

/** Methods of org.libvirt.DomainSnapshot. */
export interface DomainSnapshotMethods {
  /** See https://libvirt.org/html/libvirt-libvirt-domain-snapshot.html#virDomainSnapshotDelete */
  Delete(flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain-snapshot.html#virDomainSnapshotGetParent */
  GetParent(flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain-snapshot.html#virDomainSnapshotGetXMLDesc */
  GetXMLDesc(flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain-snapshot.html#virDomainSnapshotIsCurrent */
  IsCurrent(flags: number): Promise<boolean>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain-snapshot.html#virDomainSnapshotListAllChildren */
  ListChildren(flags: number): Promise<string[]>;
  /** See https://libvirt.org/html/libvirt-libvirt-domain-snapshot.html#virDomainRevertToSnapshot */
  Revert(flags: number): Promise<void>;
}

/** Properties of org.libvirt.DomainSnapshot. */
export interface DomainSnapshotProperties {
}

/** Signal payloads of org.libvirt.DomainSnapshot, as the tuple dbus-next passes. */
export interface DomainSnapshotSignals {
}

export const DomainSnapshotSpec: Spec<DomainSnapshotMethods, DomainSnapshotProperties, DomainSnapshotSignals> = {
  name: 'org.libvirt.DomainSnapshot',
  methods: {
    Delete: ['u', ''],
    GetParent: ['u', 'o'],
    GetXMLDesc: ['u', 's'],
    IsCurrent: ['u', 'b'],
    ListChildren: ['u', 'ao'],
    Revert: ['u', ''],
  },
  properties: {
  },
  signals: {
  },
};
