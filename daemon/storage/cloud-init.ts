// The cloud-init NoCloud seed: pure composition of meta-data, user-data and network-config from the spec
// (network-config v2 generated from the NICs, matched by MAC, when the spec has none), then an ISO via xorriso.
import { chmod, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { runCommand } from '../host/run-command.js';
import { AppError, errorMessage } from '../lib/errors.js';
import type { VmSpec } from '../vm/vm-model.js';

/** The volume label NoCloud looks for. */
export const SEED_VOLUME_ID = 'cidata';

export interface SeedFiles {
  'meta-data': string;
  'user-data': string;
  'network-config'?: string;
}

/** A NIC as the guest will see it: the spec's name and the MAC the daemon settled on. */
export interface SeedNic {
  name: string;
  mac: string;
}

/** network-config v2: every NIC by MAC with DHCPv4 (our per-NIC DHCP server hands out the spec's or IPAM's IP). */
export function networkConfigFromNics(nics: readonly SeedNic[]): string {
  const ethernets: Record<string, unknown> = {};
  for (const n of nics) ethernets[n.name] = { match: { macaddress: n.mac.toLowerCase() }, dhcp4: true };
  return stringify({ network: { version: 2, ethernets } });
}

/**
 * Pure: the seed's files. `instanceId` should change whenever the guest must re-run its first-boot modules
 * (cloud-init keys them on it); the VM's uuid is the natural choice.
 */
export function seedFiles(spec: Pick<VmSpec, 'name' | 'cloudInit'>, nics: readonly SeedNic[], instanceId: string): SeedFiles {
  const ci = spec.cloudInit ?? {};
  return {
    'meta-data': ci.metaData ?? stringify({ 'instance-id': instanceId, 'local-hostname': spec.name }),
    'user-data': ci.userData ?? '#cloud-config\n',
    ...(ci.networkData !== undefined ? { 'network-config': ci.networkData } : nics.length > 0 ? { 'network-config': networkConfigFromNics(nics) } : {}),
  };
}

/**
 * Writes the seed ISO at `isoPath` (absolute, already confined by the caller), replacing any previous one
 * atomically so a running guest never sees a half-written image.
 */
export async function writeSeedIso(files: SeedFiles, isoPath: string, opts: { xorriso?: string } = {}): Promise<void> {
  const staging = await mkdtemp(join(dirname(isoPath), `.${basename(isoPath)}.staging-`));
  const tmpIso = `${staging}.iso`;
  try {
    const dir = join(staging, 'files');
    await mkdir(dir, { mode: 0o755 });
    for (const [name, content] of Object.entries(files)) if (content !== undefined) await writeFile(join(dir, name), content, { mode: 0o644 });
    try {
      await runCommand(opts.xorriso ?? 'xorriso', ['-as', 'mkisofs', '-quiet', '-o', tmpIso, '-V', SEED_VOLUME_ID, '-J', '-R', dir]);
    } catch (e) {
      throw new AppError('HOST_ERROR', `building the cloud-init seed failed: ${errorMessage(e)}`, { cause: e });
    }
    // libvirt's qemu user must read it (DAC relabelling only changes the owner while the domain runs).
    await chmod(tmpIso, 0o644);
    await rename(tmpIso, isoPath);
  } finally {
    await rm(tmpIso, { force: true });
    await rm(staging, { recursive: true, force: true });
  }
}

