// Shared plumbing of the nodevirt addon: N-API status checks and errno -> JS Error
// (code/errno/syscall like Node's own system errors), plus each module's registration.
#ifndef NODEVIRT_COMMON_H
#define NODEVIRT_COMMON_H

#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// On a failed N-API call, make sure a JS exception is pending and bail out of the binding.
#define NV_CALL(env, call)                  \
  do {                                      \
    napi_status nv_s_ = (call);             \
    if (nv_s_ != napi_ok) {                 \
      nv_throw_status((env), nv_s_);        \
      return NULL;                          \
    }                                       \
  } while (0)

void nv_throw_status(napi_env env, napi_status status);
// An Error like "ioctl(TUNSETIFF) tap0: Device or resource busy" with code "EBUSY", errno -16.
napi_value nv_errno_error(napi_env env, int err, const char *syscall, const char *subject);
napi_value nv_throw_errno(napi_env env, int err, const char *syscall, const char *subject);
napi_value nv_throw_type(napi_env env, const char *msg);

// Reads an interface name argument. Returns 0, an errno (EINVAL) for a name the kernel would
// reject or misread (empty, > 15 bytes, '%' template, '/', ':', whitespace, "." / ".."),
// or -1 with a TypeError pending when it is not a string. buf holds IFNAMSIZ bytes.
int nv_get_ifname(napi_env env, napi_value v, char *buf);
// Reads an integer argument in [min, max]; false with a TypeError pending otherwise.
bool nv_get_int(napi_env env, napi_value v, int64_t min, int64_t max, const char *what, int64_t *out);

napi_status nv_set_fn(napi_env env, napi_value obj, const char *name, napi_callback cb);
napi_value nv_init_tap(napi_env env, napi_value exports);
napi_value nv_init_packet(napi_env env, napi_value exports);
napi_value nv_init_notify(napi_env env, napi_value exports);

#endif
