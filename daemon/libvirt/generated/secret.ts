// GENERATED from org.libvirt.Secret.xml by daemon/libvirt/codegen/generate.ts - do not edit; run `npm run gen:libvirt`.
// Typed methods, properties and signal payloads for bindInterface() in ../dbus-bind.ts.
// dbus-bind's InterfaceSpec, aliased: org.libvirt.Interface itself generates an InterfaceSpec.
import type { InterfaceSpec as Spec } from '../dbus-bind.js';

/** Methods of org.libvirt.Secret. */
export interface SecretMethods {
  /** See https://libvirt.org/html/libvirt-libvirt-secret.html#virSecretGetValue */
  GetValue(flags: number): Promise<Buffer>;
  /** See https://libvirt.org/html/libvirt-libvirt-secret.html#virSecretGetXMLDesc */
  GetXMLDesc(flags: number): Promise<string>;
  /** See https://libvirt.org/html/libvirt-libvirt-secret.html#virSecretSetValue */
  SetValue(value: Buffer, flags: number): Promise<void>;
  /** See https://libvirt.org/html/libvirt-libvirt-secret.html#virSecretUndefine */
  Undefine(): Promise<void>;
}

/** Properties of org.libvirt.Secret. */
export interface SecretProperties {
  /** See https://libvirt.org/html/libvirt-libvirt-secret.html#virSecretGetUUIDString */
  readonly UUID: string;
  /** See https://libvirt.org/html/libvirt-libvirt-secret.html#virSecretGetUsageID */
  readonly UsageID: string;
  /** See https://libvirt.org/html/libvirt-libvirt-secret.html#virSecretGetUsageType */
  readonly UsageType: number;
}

/** Signal payloads of org.libvirt.Secret, as the tuple dbus-next passes. */
export interface SecretSignals {
}

export const SecretSpec: Spec<SecretMethods, SecretProperties, SecretSignals> = {
  name: 'org.libvirt.Secret',
  methods: {
    GetValue: ['u', 'ay'],
    GetXMLDesc: ['u', 's'],
    SetValue: ['ayu', ''],
    Undefine: ['', ''],
  },
  properties: {
    UUID: ['s', 'read'],
    UsageID: ['s', 'read'],
    UsageType: ['i', 'read'],
  },
  signals: {
  },
};
