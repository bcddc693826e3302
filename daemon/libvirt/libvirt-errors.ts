// The one place that turns D-Bus / libvirt-dbus failures into AppErrors with stable codes, keeping libvirt's text.
import { DBusError } from 'dbus-next';
import { AppError } from '../lib/errors.js';

/** D-Bus errors that mean "nobody (usable) is answering", as opposed to libvirt refusing the request. */
const UNAVAILABLE_DBUS = new Set([
  'org.freedesktop.DBus.Error.ServiceUnknown',
  'org.freedesktop.DBus.Error.NameHasNoOwner',
  'org.freedesktop.DBus.Error.NoReply',
  'org.freedesktop.DBus.Error.Disconnected',
  'org.freedesktop.DBus.Error.NoServer',
  'org.freedesktop.DBus.Error.Timeout',
  'org.freedesktop.DBus.Error.TimedOut',
  'org.freedesktop.DBus.Error.Spawn.ChildExited',
  'org.freedesktop.DBus.Error.Spawn.ExecFailed',
]);

/**
 * libvirt-dbus reports a dead or unreachable libvirtd as an ordinary org.libvirt.Error; these are libvirt's
 * messages for that (remote driver / RPC layer), matched on text because libvirt-dbus drops the error code.
 */
const UNAVAILABLE_LIBVIRT = [
  /^Failed to connect socket/,
  /^Cannot recv data/,
  /^Cannot write data/,
  /client socket is closed/,
  /^End of file while reading data/,
  /no connection driver available/,
  /^Connection reset by peer/,
  /^internal error: connection closed due to keepalive timeout/,
];

export function isUnavailableMessage(text: string): boolean {
  return UNAVAILABLE_LIBVIRT.some((re) => re.test(text));
}

/** AppError for everything D-Bus or libvirt said; anything else (a marshalling TypeError...) is a bug and passes through. */
export function translateError(e: unknown, what: string): Error {
  if (e instanceof AppError) return e;
  if (e instanceof DBusError) {
    const text = e.text || e.message;
    if (e.type === 'org.libvirt.Error' || e.type.startsWith('org.libvirt.')) {
      if (text.startsWith('Domain not found')) return new AppError('DOMAIN_NOT_FOUND', text, { cause: e, extra: { dbusError: e.type } });
      if (isUnavailableMessage(text)) return new AppError('LIBVIRT_UNAVAILABLE', `${what}: ${text}`, { cause: e, extra: { dbusError: e.type } });
      return new AppError('LIBVIRT_ERROR', text, { cause: e, extra: { dbusError: e.type } });
    }
    if (UNAVAILABLE_DBUS.has(e.type)) return new AppError('LIBVIRT_UNAVAILABLE', `${what}: ${text}`, { cause: e, extra: { dbusError: e.type } });
    return new AppError('LIBVIRT_ERROR', `${what}: ${e.type}: ${text}`, { cause: e, extra: { dbusError: e.type } });
  }
  return e instanceof Error ? e : new Error(String(e));
}
