// libvirt's numeric enums (virDomainState, virDomainEventType and its per-event detail enums, as of libvirt 9.0)
// mirrored as string unions, plus the decoders the client uses on D-Bus payloads. Index = libvirt's value.

export const DOMAIN_STATES = ['nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended'] as const;
export type DomainState = (typeof DOMAIN_STATES)[number];

export const DOMAIN_EVENT_DETAILS = {
  defined: ['added', 'updated', 'renamed', 'from-snapshot'],
  undefined: ['removed', 'renamed'],
  started: ['booted', 'migrated', 'restored', 'from-snapshot', 'wakeup'],
  suspended: ['paused', 'migrated', 'ioerror', 'watchdog', 'restored', 'from-snapshot', 'api-error', 'postcopy', 'postcopy-failed'],
  resumed: ['unpaused', 'migrated', 'from-snapshot', 'postcopy', 'postcopy-failed'],
  stopped: ['shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from-snapshot'],
  // finished: the guest completed its shutdown; guest/host: who asked for it (SIGTERM from destroy counts as host).
  shutdown: ['finished', 'guest', 'host'],
  pmsuspended: ['memory', 'disk'],
  crashed: ['panicked', 'crashloaded'],
} as const;

/** virDomainEventType order: DEFINED=0 ... CRASHED=8. */
export const DOMAIN_EVENT_TYPES = ['defined', 'undefined', 'started', 'suspended', 'resumed', 'stopped', 'shutdown', 'pmsuspended', 'crashed'] as const;
export type DomainEventType = (typeof DOMAIN_EVENT_TYPES)[number];

/** The detail union for one event type, or 'unknown' when a newer libvirt sends a value we do not know yet. */
export type DomainEventDetail<E extends DomainEventType> = (typeof DOMAIN_EVENT_DETAILS)[E][number] | 'unknown';

/** A decoded lifecycle event: event and detail are correlated, so switching on `event` narrows `detail`. */
export type DomainLifecycle = { [E in DomainEventType]: { event: E; detail: DomainEventDetail<E> } }[DomainEventType];

export function decodeDomainState(code: number): DomainState {
  return DOMAIN_STATES[code] ?? 'nostate';
}

/** Undefined for an event type newer than this table (the caller logs and drops it). */
export function decodeDomainEvent(event: number, detail: number): DomainLifecycle | undefined {
  const type = DOMAIN_EVENT_TYPES[event];
  if (type === undefined) return undefined;
  const details: readonly string[] = DOMAIN_EVENT_DETAILS[type];
  return { event: type, detail: details[detail] ?? 'unknown' } as DomainLifecycle;
}

// Flags the client passes (libvirt-domain.h).
export const VIR_DOMAIN_XML_SECURE = 1;
export const VIR_DOMAIN_XML_INACTIVE = 2;
export const VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN = 1;
export const VIR_DOMAIN_REBOOT_ACPI_POWER_BTN = 1;
/** MANAGED_SAVE | SNAPSHOTS_METADATA | NVRAM | CHECKPOINTS_METADATA: undefine removes everything libvirt keeps. */
export const VIR_DOMAIN_UNDEFINE_ALL = 1 | 2 | 4 | 16;
