// sd_notify: one datagram to $NOTIFY_SOCKET (a path or an abstract '@' name). Node has no unix
// datagram sockets; the caller reads the environment and passes the address in.
#include "common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

// sdNotify(address, state) -> true, or throws (ENOENT, ECONNREFUSED, EAGAIN when the manager's queue is full...).
static napi_value sd_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NV_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype t0, t1;
  NV_CALL(env, napi_typeof(env, argv[0], &t0));
  NV_CALL(env, napi_typeof(env, argv[1], &t1));
  if (argc != 2 || t0 != napi_string || t1 != napi_string) return nv_throw_type(env, "sdNotify(address, state)");

  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t alen = 0;
  NV_CALL(env, napi_get_value_string_utf8(env, argv[0], NULL, 0, &alen));
  // Abstract names have no terminating NUL; paths need room for one.
  if (alen < 2 || alen >= sizeof sa.sun_path) return nv_throw_errno(env, EINVAL, "sdNotify", "(bad NOTIFY_SOCKET)");
  NV_CALL(env, napi_get_value_string_utf8(env, argv[0], sa.sun_path, sizeof sa.sun_path, &alen));
  if (strlen(sa.sun_path) != alen) return nv_throw_errno(env, EINVAL, "sdNotify", "(bad NOTIFY_SOCKET)");
  socklen_t salen;
  if (sa.sun_path[0] == '@') {
    sa.sun_path[0] = '\0';
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + alen);
  } else if (sa.sun_path[0] == '/') {
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + alen + 1);
  } else {
    // systemd's other forms (vsock:...) are not used on a KVM host.
    return nv_throw_errno(env, EAFNOSUPPORT, "sdNotify", sa.sun_path);
  }

  size_t slen = 0;
  NV_CALL(env, napi_get_value_string_utf8(env, argv[1], NULL, 0, &slen));
  char *state = malloc(slen + 1);
  if (state == NULL) return nv_throw_errno(env, ENOMEM, "sdNotify", NULL);
  if (napi_get_value_string_utf8(env, argv[1], state, slen + 1, &slen) != napi_ok) {
    free(state);
    nv_throw_status(env, napi_string_expected);
    return NULL;
  }
  // Non-blocking: a stuck service manager must not block the event loop; EAGAIN is reported instead.
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    free(state);
    return nv_throw_errno(env, errno, "socket(AF_UNIX)", NULL);
  }
  ssize_t n = sendto(fd, state, slen, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
  int err = n < 0 ? errno : (size_t)n != slen ? EIO : 0;
  free(state);
  (void)close(fd);
  if (err != 0) return nv_throw_errno(env, err, "sendto", "NOTIFY_SOCKET");
  napi_value ok;
  NV_CALL(env, napi_get_boolean(env, true, &ok));
  return ok;
}

napi_value nv_init_notify(napi_env env, napi_value exports) {
  NV_CALL(env, nv_set_fn(env, exports, "sdNotify", sd_notify));
  return exports;
}
