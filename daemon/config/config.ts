// The daemon's configuration: a YAML file (default /etc/nodevirt/config.yaml) plus NODEVIRT_* environment
// overrides, validated against one JSON schema so every mistake is reported with its path.
import { readFile } from 'node:fs/promises';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { parse as parseYaml } from 'yaml';
import addFormatsModule from 'ajv-formats';
import { AppError } from '../lib/errors.js';

export const DEFAULT_CONFIG_PATH = '/etc/nodevirt/config.yaml';

export interface Config {
  stateDir: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  api: {
    unixSocket: { path: string; mode: number; group: string };
    /** Absent: no TCP listener. Present: every request but healthz needs a bearer token. */
    tcp?: { host: string; port: number };
  };
  libvirt: {
    uri: string;
    /** D-Bus address of the system bus; absent means the standard system bus. */
    busAddress?: string;
  };
  /** `auto` detects KVM usability; `kvm`/`qemu` force it. */
  virtType: 'auto' | 'kvm' | 'qemu';
  dhcp: {
    /** Absent: no relay listener. Present: a UDP socket answering relayed requests (giaddr set) for our VMs. */
    relay?: { address: string; port: number };
  };
}

export const DEFAULT_CONFIG: Config = {
  stateDir: '/var/lib/nodevirt',
  logLevel: 'info',
  api: { unixSocket: { path: '/run/nodevirt/nodevirt.sock', mode: 0o660, group: 'nodevirt' } },
  libvirt: { uri: 'qemu:///system' },
  virtType: 'auto',
  dhcp: {},
};

// What the file may contain. Every key optional (defaults fill in); unknown keys are errors so that a typo
// never silently falls back to a default.
const FILE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    stateDir: { type: 'string', pattern: '^/' , minLength: 2 },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    api: {
      type: 'object',
      additionalProperties: false,
      properties: {
        unixSocket: {
          type: 'object',
          additionalProperties: false,
          properties: {
            path: { type: 'string', pattern: '^/', maxLength: 107 },
            mode: { type: 'string', pattern: '^0?[0-7]{3}$' },
            group: { type: 'string', pattern: '^[a-z_][a-z0-9_-]*\\$?$', maxLength: 32 },
          },
        },
        tcp: {
          type: ['object', 'null'],
          additionalProperties: false,
          required: ['port'],
          properties: {
            host: { type: 'string', minLength: 1 },
            port: { type: 'integer', minimum: 1, maximum: 65535 },
          },
        },
      },
    },
    libvirt: {
      type: 'object',
      additionalProperties: false,
      properties: {
        uri: { enum: ['qemu:///system'] },
        busAddress: { type: 'string', minLength: 1 },
      },
    },
    virtType: { enum: ['auto', 'kvm', 'qemu'] },
    dhcp: {
      type: 'object',
      additionalProperties: false,
      properties: {
        relay: {
          type: ['object', 'null'],
          additionalProperties: false,
          required: ['address'],
          properties: {
            address: { type: 'string', format: 'ipv4' },
            port: { type: 'integer', minimum: 1, maximum: 65535 },
          },
        },
      },
    },
  },
} as const;

type FileConfig = {
  stateDir?: string;
  logLevel?: Config['logLevel'];
  api?: { unixSocket?: { path?: string; mode?: string; group?: string }; tcp?: { host?: string; port: number } | null };
  libvirt?: { uri?: string; busAddress?: string };
  virtType?: Config['virtType'];
  dhcp?: { relay?: { address: string; port?: number } | null };
};

const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormatsModule.default(ajv, ['ipv4']);
const validateFile = ajv.compile<FileConfig>(FILE_SCHEMA);

/** Environment variables that override the file, and where each lands. */
export const ENV_OVERRIDES: Record<string, (c: FileConfig, v: string) => void> = {
  NODEVIRT_STATE_DIR: (c, v) => (c.stateDir = v),
  NODEVIRT_LOG_LEVEL: (c, v) => (c.logLevel = v as Config['logLevel']),
  NODEVIRT_SOCKET: (c, v) => ((c.api ??= {}).unixSocket = { ...c.api.unixSocket, path: v }),
  NODEVIRT_SOCKET_GROUP: (c, v) => ((c.api ??= {}).unixSocket = { ...c.api.unixSocket, group: v }),
  NODEVIRT_TCP: (c, v) => {
    const api = (c.api ??= {});
    if (v === '' || v === 'off') {
      api.tcp = null;
      return;
    }
    const m = /^(.*):(\d+)$/.exec(v);
    if (!m) throw new AppError('CONFIG_INVALID', `NODEVIRT_TCP must be HOST:PORT or "off", got ${JSON.stringify(v)}`);
    api.tcp = { host: m[1]!.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1', port: Number(m[2]) };
  },
  NODEVIRT_BUS_ADDRESS: (c, v) => ((c.libvirt ??= {}).busAddress = v),
  NODEVIRT_VIRT_TYPE: (c, v) => (c.virtType = v as Config['virtType']),
};

export interface LoadConfigOptions {
  /** Explicit path (from --config or NODEVIRT_CONFIG): must exist. Without it the default may be absent. */
  path?: string;
  env?: NodeJS.ProcessEnv;
}

export async function loadConfig(opts: LoadConfigOptions = {}): Promise<{ config: Config; source: string | null }> {
  const env = opts.env ?? process.env;
  const explicit = opts.path ?? env.NODEVIRT_CONFIG;
  const path = explicit ?? DEFAULT_CONFIG_PATH;
  let text: string | null = null;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!(code === 'ENOENT' && explicit === undefined)) {
      throw new AppError('CONFIG_INVALID', `cannot read config ${path}: ${(e as Error).message}`);
    }
  }
  let file: unknown = {};
  if (text !== null) {
    try {
      file = parseYaml(text) ?? {};
    } catch (e) {
      throw new AppError('CONFIG_INVALID', `config ${path} is not valid YAML: ${(e as Error).message}`);
    }
  }
  return { config: resolveConfig(file, env, text === null ? 'defaults' : path), source: text === null ? null : path };
}

const ENV_POINTERS: Record<string, string> = {
  NODEVIRT_STATE_DIR: '/stateDir',
  NODEVIRT_LOG_LEVEL: '/logLevel',
  NODEVIRT_SOCKET: '/api/unixSocket/path',
  NODEVIRT_SOCKET_GROUP: '/api/unixSocket/group',
  NODEVIRT_TCP: '/api/tcp',
  NODEVIRT_BUS_ADDRESS: '/libvirt/busAddress',
  NODEVIRT_VIRT_TYPE: '/virtType',
};

function explain(e: ErrorObject, envSources: Map<string, string>): string {
  let reason: string;
  if (e.keyword === 'additionalProperties') reason = `unknown key "${String(e.params.additionalProperty)}"`;
  else if (e.keyword === 'enum') reason = `must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  else if (e.instancePath === '/api/unixSocket/mode' && e.keyword === 'type') reason = 'must be a quoted octal string such as "0660" (unquoted YAML reads 0660 as a number)';
  else reason = e.message ?? 'invalid';
  for (const [name, value] of envSources) {
    const ptr = ENV_POINTERS[name];
    if (ptr && (e.instancePath === ptr || e.instancePath.startsWith(`${ptr}/`))) return `${reason} (set by ${name}=${JSON.stringify(value)})`;
  }
  return reason;
}

/** Pure: validate a parsed file, apply env overrides, fill defaults. */
export function resolveConfig(file: unknown, env: NodeJS.ProcessEnv, origin = 'config'): Config {
  if (file === null || typeof file !== 'object' || Array.isArray(file)) {
    throw new AppError('CONFIG_INVALID', `${origin}: the top level must be a mapping`);
  }
  const merged = structuredClone(file) as FileConfig;
  // Which environment variable set each key, so an error names the variable rather than the file.
  const envSources = new Map<string, string>();
  for (const [name, apply] of Object.entries(ENV_OVERRIDES)) {
    const v = env[name];
    if (v === undefined) continue;
    const before = JSON.stringify(merged);
    apply(merged, v);
    if (JSON.stringify(merged) !== before) envSources.set(name, v);
  }
  if (!validateFile(merged)) {
    const issues = (validateFile.errors ?? []).map((e) => ({ pointer: e.instancePath || '/', reason: explain(e, envSources) }));
    const detail = issues.map((i) => `${i.pointer}: ${i.reason}`).join('; ');
    throw new AppError('CONFIG_INVALID', `${origin}: ${detail}`, { issues });
  }
  const d = DEFAULT_CONFIG;
  const sock = merged.api?.unixSocket ?? {};
  const tcp = merged.api?.tcp;
  return {
    stateDir: merged.stateDir ?? d.stateDir,
    logLevel: merged.logLevel ?? d.logLevel,
    api: {
      unixSocket: {
        path: sock.path ?? d.api.unixSocket.path,
        mode: sock.mode !== undefined ? parseInt(sock.mode, 8) : d.api.unixSocket.mode,
        group: sock.group ?? d.api.unixSocket.group,
      },
      ...(tcp ? { tcp: { host: tcp.host ?? '127.0.0.1', port: tcp.port } } : {}),
    },
    libvirt: {
      uri: merged.libvirt?.uri ?? d.libvirt.uri,
      ...(merged.libvirt?.busAddress !== undefined ? { busAddress: merged.libvirt.busAddress } : {}),
    },
    virtType: merged.virtType ?? d.virtType,
    dhcp: merged.dhcp?.relay ? { relay: { address: merged.dhcp.relay.address, port: merged.dhcp.relay.port ?? 67 } } : {},
  };
}
