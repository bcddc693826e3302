// Pure seed composition: defaults from the spec, user documents kept verbatim, network-config v2 from NICs.
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { networkConfigFromNics, seedFiles } from '../../../daemon/storage/cloud-init.js';

describe('seedFiles', () => {
  it('defaults meta-data to the instance id and the VM name as hostname, with an empty cloud-config', () => {
    const files = seedFiles({ name: 'web-1' }, [], 'uuid-1');
    expect(parse(files['meta-data'])).toEqual({ 'instance-id': 'uuid-1', 'local-hostname': 'web-1' });
    expect(files['user-data']).toBe('#cloud-config\n');
    expect(files['network-config']).toBeUndefined();
  });

  it('keeps user documents byte for byte, including a given networkData', () => {
    const cloudInit = { userData: '#!/bin/sh\necho "<&>"\n', metaData: 'instance-id: x\n', networkData: 'version: 1\n' };
    expect(seedFiles({ name: 'a', cloudInit }, [{ name: 'net0', mac: '0e:00:00:00:00:01' }], 'u')).toEqual({
      'meta-data': cloudInit.metaData,
      'user-data': cloudInit.userData,
      'network-config': cloudInit.networkData,
    });
  });

  it('generates network-config v2 from the NICs, matched by MAC, when networkData is omitted', () => {
    const files = seedFiles({ name: 'a' }, [{ name: 'net0', mac: '0E:00:00:00:00:01' }, { name: 'mgmt', mac: '0e:00:00:00:00:02' }], 'u');
    expect(parse(files['network-config']!)).toEqual({
      network: {
        version: 2,
        ethernets: {
          net0: { match: { macaddress: '0e:00:00:00:00:01' }, dhcp4: true },
          mgmt: { match: { macaddress: '0e:00:00:00:00:02' }, dhcp4: true },
        },
      },
    });
  });

  it('quotes hostile values safely in the generated YAML', () => {
    const hostile = "a: b\n- c # '\"";
    expect(parse(seedFiles({ name: hostile }, [], hostile)['meta-data'])).toEqual({ 'instance-id': hostile, 'local-hostname': hostile });
    expect(parse(networkConfigFromNics([{ name: 'n', mac: hostile }])).network.ethernets.n.match.macaddress).toBe(hostile.toLowerCase());
  });
});
