// Bench helper: our DHCP core behind the relay transport, one server per MAC listed in a file (the same
// reservations dnsmasq and kea get), until SIGTERM. Started by dhcp-perfdhcp.sh inside a network namespace.
import { readFileSync } from 'node:fs';
import { createRelayTransport } from '../../daemon/net/dhcp/relay-transport.js';
import { createDhcpServerRegistry } from '../../daemon/net/dhcp/registry.js';
import { createDhcpServer } from '../../daemon/net/dhcp/server.js';

const [macFile, ipFile, serverIp] = process.argv.slice(2);
if (!macFile || !ipFile || !serverIp) throw new Error('usage: dhcp-relay-server <mac-file> <ip-file> <server-ip>');
const macs = readFileSync(macFile, 'utf8').trim().split('\n');
const ips = readFileSync(ipFile, 'utf8').trim().split('\n');
const registry = createDhcpServerRegistry();
macs.forEach((mac, i) => {
  registry.add(
    createDhcpServer({ mac, ip: ips[i]!, prefixLength: 16, serverIp, router: serverIp, dns: [serverIp], leaseSeconds: 3600 }),
  );
});
const transport = createRelayTransport({ registry, address: serverIp });
await transport.start();
console.log(`ready: ${registry.size} servers on ${serverIp}:67`);
process.on('SIGTERM', () => {
  console.log(`relay stats ${JSON.stringify(transport.stats())}`);
  void transport.stop().then(() => process.exit(0));
});
