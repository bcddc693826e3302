// Persistent tap devices: created here and closed again, so libvirt can open them itself by name
// (<interface type='ethernet'><target dev='NAME' managed='no'/>); deleted by clearing persistence.
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define TAP_VNET_HDR 1
#define TAP_MULTI_QUEUE 2

static int tun_open(void) { return open("/dev/net/tun", O_RDWR | O_CLOEXEC); }

static int tun_setiff(int fd, const char *name, short flags) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strlen(name) + 1);  // length checked to be < IFNAMSIZ
  ifr.ifr_flags = flags;
  return ioctl(fd, TUNSETIFF, &ifr);
}

// createTap(name, uid, gid, flags): uid/gid -1 leave ownership to root only.
static napi_value create_tap(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NV_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 4) return nv_throw_type(env, "createTap(name, uid, gid, flags)");
  char name[IFNAMSIZ];
  int r = nv_get_ifname(env, argv[0], name);
  if (r < 0) return NULL;
  if (r > 0) return nv_throw_errno(env, r, "createTap", "(invalid interface name)");
  int64_t uid, gid, flags;
  if (!nv_get_int(env, argv[1], -1, 0xfffffffe, "uid", &uid) || !nv_get_int(env, argv[2], -1, 0xfffffffe, "gid", &gid) ||
      !nv_get_int(env, argv[3], 0, TAP_VNET_HDR | TAP_MULTI_QUEUE, "flags", &flags))
    return NULL;

  int fd = tun_open();
  if (fd < 0) return nv_throw_errno(env, errno, "open", "/dev/net/tun");
  // IFF_TUN_EXCL makes an existing name (tap or any other link) fail instead of attaching to it.
  short ifflags = IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL;
  if (flags & TAP_VNET_HDR) ifflags |= IFF_VNET_HDR;
  if (flags & TAP_MULTI_QUEUE) ifflags |= IFF_MULTI_QUEUE;
  const char *call = NULL;
  int err = 0;
  if (tun_setiff(fd, name, ifflags) < 0) {
    err = errno == EBUSY ? EEXIST : errno;
    call = "ioctl(TUNSETIFF)";
  } else if (uid >= 0 && ioctl(fd, TUNSETOWNER, (unsigned long)uid) < 0) {
    err = errno;
    call = "ioctl(TUNSETOWNER)";
  } else if (gid >= 0 && ioctl(fd, TUNSETGROUP, (unsigned long)gid) < 0) {
    err = errno;
    call = "ioctl(TUNSETGROUP)";
  } else if (ioctl(fd, TUNSETPERSIST, 1UL) < 0) {  // last: any earlier failure leaves no device behind
    err = errno;
    call = "ioctl(TUNSETPERSIST)";
  }
  // Closing a tun fd cannot fail in a way we could act on; the device state is already decided.
  (void)close(fd);
  if (err != 0) return nv_throw_errno(env, err, call, name);
  return NULL;
}

// deleteTap(name): ENODEV if missing, EINVAL if not a tap, EBUSY while a (single-queue) user holds it.
static napi_value delete_tap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NV_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) return nv_throw_type(env, "deleteTap(name)");
  char name[IFNAMSIZ];
  int r = nv_get_ifname(env, argv[0], name);
  if (r < 0) return NULL;
  if (r > 0) return nv_throw_errno(env, r, "deleteTap", "(invalid interface name)");
  // Without this check TUNSETIFF would create the tap we are asked to delete.
  if (if_nametoindex(name) == 0) return nv_throw_errno(env, errno, "if_nametoindex", name);

  int fd = tun_open();
  if (fd < 0) return nv_throw_errno(env, errno, "open", "/dev/net/tun");
  const char *call = "ioctl(TUNSETIFF)";
  int err = 0;
  int rc = tun_setiff(fd, name, IFF_TAP | IFF_NO_PI);
  // A multi-queue tap only accepts attaches that say so; a non-tap link fails both ways with EINVAL.
  if (rc < 0 && errno == EINVAL) rc = tun_setiff(fd, name, IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE);
  if (rc < 0) {
    err = errno;
  } else if (ioctl(fd, TUNSETPERSIST, 0UL) < 0) {
    err = errno;
    call = "ioctl(TUNSETPERSIST)";
  }
  (void)close(fd);  // the last close of a non-persistent tap unregisters it, synchronously
  if (err != 0) return nv_throw_errno(env, err, call, name);
  return NULL;
}

napi_value nv_init_tap(napi_env env, napi_value exports) {
  NV_CALL(env, nv_set_fn(env, exports, "createTap", create_tap));
  NV_CALL(env, nv_set_fn(env, exports, "deleteTap", delete_tap));
  return exports;
}
