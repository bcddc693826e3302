// Typed domain errors with stable machine codes. Only api/errors.ts turns them into HTTP;
// domain code throws these for expected failures and plain Error only for bugs.

export const ERROR_CODES = {
  // request shape
  MALFORMED_JSON: 'bad request body: not valid JSON',
  VALIDATION_FAILED: 'the request does not match the API schema',
  BODY_TOO_LARGE: 'the request body exceeds the limit',
  UNSUPPORTED_MEDIA_TYPE: 'the request body has an unsupported content type',
  NOT_FOUND: 'no such resource',
  ROUTE_NOT_FOUND: 'no such route',
  METHOD_NOT_ALLOWED: 'method not allowed on this route',
  UNAUTHENTICATED: 'a valid bearer token is required',
  LOCAL_ONLY: 'this operation is only allowed over the local unix socket',
  // state
  CONFLICT: 'the request conflicts with the current state',
  PRECONDITION_FAILED: 'the resource changed (If-Match did not match)',
  // dependencies
  LIBVIRT_UNAVAILABLE: 'libvirt is not reachable over D-Bus',
  LIBVIRT_ERROR: 'libvirt reported an error',
  DOMAIN_NOT_FOUND: 'no such libvirt domain',
  GUEST_AGENT_UNAVAILABLE: 'no guest agent answers in the VM (none configured, not connected, or no reply in time)',
  HOST_ERROR: 'a host operation failed',
  CONFIG_INVALID: 'the configuration is invalid',
  // networking (net/macs.ts, net/ipam.ts, net/nic.ts)
  MAC_INVALID: 'the MAC address is not a usable unicast address',
  MAC_IN_USE: 'the MAC address is already used on this node',
  IP_OUT_OF_SUBNET_INVALID: 'the IP address is outside the network subnet',
  IP_RESERVED_INVALID: 'the IP address is reserved (network, gateway, broadcast or a reserved range)',
  SUBNET_INVALID: 'the subnet, gateway or reserved ranges are not valid',
  IP_IN_USE: 'the IP address is already allocated',
  IP_POOL_EXHAUSTED_CONFLICT: 'the network has no free IP address left',
  NIC_EXISTS: 'the NIC is already plumbed',
  // networks (net/network-*.ts)
  NETWORK_NOT_FOUND: 'no such network',
  NETWORK_INVALID: 'the network spec is not valid on this host',
  NETWORK_IN_USE: 'the network is used by VM NICs',
  NETWORK_CONFLICT: 'the network conflicts with what exists on the host',
  FLOATING_IP_NOT_FOUND: 'no such floating IP on the network',
  // host changes with automatic rollback (net/host-change.ts)
  HOST_CHANGE_INVALID: 'the host change request is not valid',
  HOST_CHANGE_NOT_FOUND: 'no such host change',
  HOST_CHANGE_CONFLICT: 'the host change is no longer pending (confirmed, reverted or failed)',
  // VMs and storage (vm/, storage/)
  VM_SPEC_INVALID: 'the VM spec is not valid',
  VM_NOT_FOUND: 'no such VM',
  VM_CONFLICT: 'the VM is in a state that does not allow this change',
  VM_NOT_PAUSED: 'the VM is not paused',
  FIRMWARE_INVALID: 'the requested firmware is not installed on this host',
  PATH_INVALID: 'the path is not inside an allowed storage root',
  IMAGE_INVALID: 'the image file is not a usable raw or qcow2 image',
  // image registry (storage/image-registry.ts)
  IMAGE_NOT_FOUND: 'no such image',
  IMAGE_EXISTS: 'an image with this name exists or is being imported',
  IMAGE_IN_USE: 'the image is used by VMs',
  IMAGE_SOURCE_INVALID: 'the image source is not an http(s) URL or a file inside a storage root',
  IMAGE_CHECKSUM_MISMATCH: 'the image does not match the given sha256',
  IMAGE_DOWNLOAD_FAILED: 'the image source could not be read',
  // console and VNC over WebSocket (vm/console.ts, vm/vnc.ts, api/upgrade.ts)
  VM_NOT_RUNNING: 'the VM is not running',
  CONSOLE_BUSY: 'the console already has a writer',
  UPGRADE_REQUIRED: 'this resource is served only over a WebSocket upgrade',
  // async operations (ops/)
  OPERATION_NOT_FOUND: 'no such operation (unknown, or finished and expired)',
  OPERATION_CANCELLED: 'the operation was cancelled before it finished',
  INTERNAL: 'internal error',
  RESPONSE_INVALID: 'the daemon produced a response that does not match the API schema',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorIssue {
  /** JSON pointer into the offending document, e.g. "/body/memory". */
  pointer: string;
  reason: string;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly issues: ErrorIssue[] | undefined;
  readonly extra: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message?: string, opts: { issues?: ErrorIssue[]; extra?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message ?? ERROR_CODES[code], opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AppError';
    this.code = code;
    this.issues = opts.issues;
    this.extra = opts.extra;
  }
}

export function isAppError(e: unknown, code?: ErrorCode): e is AppError {
  return e instanceof AppError && (code === undefined || e.code === code);
}

/** Message of anything thrown, for logs. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
