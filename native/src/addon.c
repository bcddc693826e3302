// Module entry of the nodevirt addon and the helpers every binding shares (errors, argument parsing).
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

void nv_throw_status(napi_env env, napi_status status) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  const napi_extended_error_info *info = NULL;
  const char *msg = "N-API call failed";
  if (napi_get_last_error_info(env, &info) == napi_ok && info != NULL && info->error_message != NULL)
    msg = info->error_message;
  napi_throw_error(env, "ERR_NODEVIRT_NAPI", msg);
  (void)status;
}

napi_value nv_errno_error(napi_env env, int err, const char *syscall, const char *subject) {
  // strerrorname_np (glibc >= 2.32) gives the symbolic name Node users match on (err.code).
  const char *name = strerrorname_np(err);
  char code[32];
  if (name == NULL) {
    snprintf(code, sizeof code, "E%d", err);
    name = code;
  }
  char msg[256];
  snprintf(msg, sizeof msg, "%s%s%s: %s (%s)", syscall, subject != NULL ? " " : "", subject != NULL ? subject : "",
           strerror(err), name);
  napi_value jcode, jmsg, jerr, jerrno, jsyscall;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &jcode) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &jmsg) != napi_ok ||
      napi_create_error(env, jcode, jmsg, &jerr) != napi_ok)
    return NULL;
  // Node's system errors carry a negative errno; we follow that.
  if (napi_create_int32(env, -err, &jerrno) != napi_ok ||
      napi_set_named_property(env, jerr, "errno", jerrno) != napi_ok ||
      napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &jsyscall) != napi_ok ||
      napi_set_named_property(env, jerr, "syscall", jsyscall) != napi_ok)
    return NULL;
  return jerr;
}

napi_value nv_throw_errno(napi_env env, int err, const char *syscall, const char *subject) {
  napi_value e = nv_errno_error(env, err, syscall, subject);
  if (e == NULL || napi_throw(env, e) != napi_ok) nv_throw_status(env, napi_generic_failure);
  return NULL;
}

napi_value nv_throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

int nv_get_ifname(napi_env env, napi_value v, char *buf) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
    nv_throw_type(env, "interface name must be a string");
    return -1;
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    nv_throw_status(env, napi_string_expected);
    return -1;
  }
  if (len == 0 || len >= IFNAMSIZ) return EINVAL;
  size_t copied = 0;
  if (napi_get_value_string_utf8(env, v, buf, IFNAMSIZ, &copied) != napi_ok) {
    nv_throw_status(env, napi_string_expected);
    return -1;
  }
  if (copied != len || strlen(buf) != len) return EINVAL;  // embedded NUL
  if (strcmp(buf, ".") == 0 || strcmp(buf, "..") == 0) return EINVAL;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)buf[i];
    if (c == '/' || c == ':' || c == '%' || isspace(c)) return EINVAL;
  }
  return 0;
}

bool nv_get_int(napi_env env, napi_value v, int64_t min, int64_t max, const char *what, int64_t *out) {
  double d;
  char msg[128];
  if (napi_get_value_double(env, v, &d) != napi_ok || !isfinite(d) || d != floor(d) || d < (double)min ||
      d > (double)max) {
    snprintf(msg, sizeof msg, "%s must be an integer in [%lld, %lld]", what, (long long)min, (long long)max);
    nv_throw_type(env, msg);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

napi_status nv_set_fn(napi_env env, napi_value obj, const char *name, napi_callback cb) {
  napi_value fn;
  napi_status s = napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, obj, name, fn);
}

NAPI_MODULE_INIT() {
  if (nv_init_tap(env, exports) == NULL || nv_init_packet(env, exports) == NULL || nv_init_notify(env, exports) == NULL)
    return NULL;
  return exports;
}
