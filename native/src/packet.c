// AF_PACKET sockets bound to one interface behind a classic BPF filter: the DHCP transport.
// Reads are driven by a uv_poll_t on Node's loop, drained in bounded bursts into a JS callback.
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

// Frames are captured up to this size; longer ones arrive cut, flagged truncated with their real length.
#define FRAME_MAX 2048
// Frames handed to JS per loop wakeup, so a flood cannot starve the rest of the event loop.
#define BURST_MAX 64

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref self;  // strong while open: an open socket is not collected, like Node's own handles
  napi_ref cb;
  napi_async_context actx;
  napi_async_cleanup_hook_handle cleanup;
  int fd;
  int ifindex;
  bool open;
  bool uv_alive;   // poll handle initialised and its close callback not yet run
  bool finalized;  // JS wrapper collected
  bool in_callback;
  double received, truncated, sent, kernel_drops;
  unsigned char buf[FRAME_MAX];
} psock;

// ---- BPF program -------------------------------------------------------------------------------

#define DROP_FIXUP 0xff  // placeholder jump target, resolved to the final "ret #0"

typedef struct {
  struct sock_filter ins[24];
  unsigned n;
} prog;

static void emit(prog *p, uint16_t code, uint8_t jt, uint8_t jf, uint32_t k) {
  p->ins[p->n++] = (struct sock_filter){code, jt, jf, k};
}

// Continue when (A op k) holds, otherwise drop.
static void need(prog *p, uint16_t op, uint32_t k) { emit(p, BPF_JMP | op | BPF_K, 0, DROP_FIXUP, k); }

static void build_filter(prog *p, int ether_type, int udp_dst_port) {
  p->n = 0;
  if (udp_dst_port >= 0) {
    // IPv4, version 4 with IHL >= 5, UDP, not a non-first fragment, UDP dst port at 14 + 4*IHL + 2.
    emit(p, BPF_LD | BPF_H | BPF_ABS, 0, 0, 12);
    need(p, BPF_JEQ, ETH_P_IP);
    emit(p, BPF_LD | BPF_B | BPF_ABS, 0, 0, 14);
    emit(p, BPF_ALU | BPF_AND | BPF_K, 0, 0, 0xf0);
    need(p, BPF_JEQ, 0x40);
    emit(p, BPF_LD | BPF_B | BPF_ABS, 0, 0, 14);
    emit(p, BPF_ALU | BPF_AND | BPF_K, 0, 0, 0x0f);
    need(p, BPF_JGE, 5);
    emit(p, BPF_LD | BPF_B | BPF_ABS, 0, 0, 23);
    need(p, BPF_JEQ, 17);
    emit(p, BPF_LD | BPF_H | BPF_ABS, 0, 0, 20);
    emit(p, BPF_JMP | BPF_JSET | BPF_K, DROP_FIXUP, 0, 0x1fff);
    emit(p, BPF_LDX | BPF_B | BPF_MSH, 0, 0, 14);  // X = 4 * (IHL nibble)
    emit(p, BPF_LD | BPF_H | BPF_IND, 0, 0, 14 + 2);
    need(p, BPF_JEQ, (uint32_t)udp_dst_port);
  } else if (ether_type >= 0) {
    emit(p, BPF_LD | BPF_H | BPF_ABS, 0, 0, 12);
    need(p, BPF_JEQ, (uint32_t)ether_type);
  }
  // Accept the whole frame: a smaller snap length would also shrink the length MSG_TRUNC reports.
  emit(p, BPF_RET | BPF_K, 0, 0, 0xffffffffu);
  unsigned drop = p->n;
  emit(p, BPF_RET | BPF_K, 0, 0, 0);
  for (unsigned i = 0; i < drop; i++) {
    if (p->ins[i].jt == DROP_FIXUP) p->ins[i].jt = (uint8_t)(drop - i - 1);
    if (p->ins[i].jf == DROP_FIXUP) p->ins[i].jf = (uint8_t)(drop - i - 1);
  }
}

// ---- closing off the event loop -----------------------------------------------------------------

// Closing a bound packet socket waits for an RCU grace period in the kernel (packet_release calls
// synchronize_net, ~13 ms here), so 500 closes on the loop thread would block it for seconds. Closes are
// handed to a few detached threads instead: concurrent closers share grace periods, and the loop goes on.
// Own threads rather than libuv's pool, whose 4 threads also serve fs and dns work we must not starve.
#define CLOSERS_MAX 32
#define CLOSER_IDLE_SECONDS 2

static pthread_mutex_t cq_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cq_cv = PTHREAD_COND_INITIALIZER;
static int *cq_fds;
static size_t cq_len, cq_cap;
static unsigned cq_threads, cq_idle;
static double cq_pending;  // queued or being closed: for stats and tests waiting for the kernel side

static void *closer_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&cq_mu);
  for (;;) {
    while (cq_len == 0) {
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += CLOSER_IDLE_SECONDS;
      cq_idle++;
      int r = pthread_cond_timedwait(&cq_cv, &cq_mu, &until);
      cq_idle--;
      if (r == ETIMEDOUT && cq_len == 0) {
        cq_threads--;
        pthread_mutex_unlock(&cq_mu);
        return NULL;
      }
    }
    int fd = cq_fds[--cq_len];
    pthread_mutex_unlock(&cq_mu);
    (void)close(fd);
    pthread_mutex_lock(&cq_mu);
    cq_pending--;
  }
}

// Takes ownership of fd. Falls back to a synchronous close when no queue slot or thread can be had.
static void close_later(int fd) {
  pthread_mutex_lock(&cq_mu);
  if (cq_len == cq_cap) {
    size_t cap = cq_cap == 0 ? 64 : cq_cap * 2;
    int *grown = realloc(cq_fds, cap * sizeof *grown);
    if (grown == NULL) {
      pthread_mutex_unlock(&cq_mu);
      (void)close(fd);
      return;
    }
    cq_fds = grown;
    cq_cap = cap;
  }
  cq_fds[cq_len++] = fd;
  cq_pending++;
  // One thread per queued close up to the cap: more closers in flight means more closes per grace period.
  if (cq_idle < cq_len && cq_threads < CLOSERS_MAX) {
    pthread_attr_t attr;
    pthread_t t;
    bool started = pthread_attr_init(&attr) == 0;
    if (started) {
      (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
      (void)pthread_attr_setstacksize(&attr, 64 * 1024);
      started = pthread_create(&t, &attr, closer_main, NULL) == 0;
      (void)pthread_attr_destroy(&attr);
    }
    if (started) cq_threads++;
  }
  if (cq_threads == 0) {
    // No closer could start and none runs: do it here rather than leak the fd.
    cq_len--;
    cq_pending--;
    pthread_mutex_unlock(&cq_mu);
    (void)close(fd);
    return;
  }
  pthread_cond_signal(&cq_cv);
  pthread_mutex_unlock(&cq_mu);
}

// ---- lifecycle ---------------------------------------------------------------------------------

static void on_uv_closed(uv_handle_t *h) {
  psock *ps = h->data;
  ps->uv_alive = false;
  if (ps->cleanup != NULL) {
    napi_remove_async_cleanup_hook(ps->cleanup);
    ps->cleanup = NULL;
  }
  if (ps->finalized) free(ps);
}

// Stops reading at once and hands the fd to the closers; the uv handle goes through uv_close. No N-API
// calls, so it is safe from the env cleanup hook and the finalizer.
static void stop_io(psock *ps) {
  if (!ps->open) return;
  ps->open = false;
  if (ps->uv_alive) (void)uv_poll_stop(&ps->poll);  // removes the fd from epoll before it is closed
  if (ps->uv_alive && !uv_is_closing((uv_handle_t *)&ps->poll)) uv_close((uv_handle_t *)&ps->poll, on_uv_closed);
  // Only after libuv let go of the fd: its number stays allocated until a closer runs, so libuv never sees
  // a reused number under this handle.
  if (ps->fd >= 0) close_later(ps->fd);
  ps->fd = -1;
}

// Node waits for this hook (worker exit, env teardown) until on_uv_closed removes it.
static void on_env_cleanup(napi_async_cleanup_hook_handle h, void *arg) { stop_io(arg); }

static void on_finalize(napi_env env, void *data, void *hint) {
  psock *ps = data;
  stop_io(ps);
  if (ps->cb != NULL) (void)napi_delete_reference(env, ps->cb);
  if (ps->self != NULL) (void)napi_delete_reference(env, ps->self);
  ps->cb = ps->self = NULL;
  ps->finalized = true;
  if (!ps->uv_alive) free(ps);
}

// ---- reading -----------------------------------------------------------------------------------

// Calls cb(err, frame, origLen, pktType). False when JS threw (already reported as uncaught).
static bool deliver(psock *ps, napi_value err, const unsigned char *frame, size_t caplen, size_t origlen, int pkttype) {
  napi_env env = ps->env;
  napi_value argv[4], cb, self, result, undef;
  if (napi_get_undefined(env, &undef) != napi_ok) return false;
  argv[0] = err != NULL ? err : undef;
  argv[1] = undef;
  if (frame != NULL) {
    void *copy;
    if (napi_create_buffer_copy(env, caplen, frame, &copy, &argv[1]) != napi_ok) return false;
  }
  if (napi_create_double(env, (double)origlen, &argv[2]) != napi_ok ||
      napi_create_int32(env, pkttype, &argv[3]) != napi_ok ||
      napi_get_reference_value(env, ps->cb, &cb) != napi_ok ||
      napi_get_reference_value(env, ps->self, &self) != napi_ok || cb == NULL || self == NULL)
    return false;
  ps->in_callback = true;
  napi_status s = napi_make_callback(env, ps->actx, self, cb, 4, argv, &result);
  ps->in_callback = false;
  // close() from inside the callback leaves the async context to us: it is in use until here.
  if (!ps->open && ps->actx != NULL) {
    (void)napi_async_destroy(env, ps->actx);
    ps->actx = NULL;
  }
  if (s == napi_ok) return true;
  // A throwing callback is an uncaught exception, as for any Node event callback.
  bool pending = false;
  napi_value exc;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
      napi_get_and_clear_last_exception(env, &exc) == napi_ok)
    (void)napi_fatal_exception(env, exc);
  return false;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  psock *ps = h->data;
  napi_env env = ps->env;
  for (int i = 0; i < BURST_MAX && ps->open; i++) {
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    bool go_on = false;
    if (status < 0) {
      // libuv answers a pending socket error (POLLERR, e.g. ENETDOWN when the link goes down) with
      // UV_EBADF and stops the handle. Report the real error, which reading SO_ERROR also clears,
      // and poll again: a packet socket resumes when its link comes back up.
      int soerr = 0;
      socklen_t len = sizeof soerr;
      int e = getsockopt(ps->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr != 0 ? soerr : -status;
      (void)deliver(ps, nv_errno_error(env, e, "recvfrom", NULL), NULL, 0, 0, 0);
      int uverr = ps->open ? uv_poll_start(&ps->poll, UV_READABLE, on_poll) : 0;
      if (uverr != 0) (void)deliver(ps, nv_errno_error(env, -uverr, "uv_poll_start", NULL), NULL, 0, 0, 0);
    } else {
      struct sockaddr_ll from;
      socklen_t fromlen = sizeof from;
      memset(&from, 0, sizeof from);
      // MSG_TRUNC makes packet sockets return the frame's real length even when it exceeds buf.
      ssize_t n = recvfrom(ps->fd, ps->buf, sizeof ps->buf, MSG_TRUNC | MSG_DONTWAIT, (struct sockaddr *)&from, &fromlen);
      if (n >= 0) {
        size_t orig = (size_t)n, cap = orig > sizeof ps->buf ? sizeof ps->buf : orig;
        ps->received++;
        if (cap < orig) ps->truncated++;
        go_on = deliver(ps, NULL, ps->buf, cap, orig, from.sll_pkttype);
      } else if (errno == EINTR) {
        go_on = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        // e.g. ENETDOWN once after the link went down or away; the error is consumed by reading it.
        (void)deliver(ps, nv_errno_error(env, errno, "recvfrom", NULL), NULL, 0, 0, 0);
      }
    }
    (void)napi_close_handle_scope(env, scope);
    if (!go_on) return;
  }
}

// ---- JS class ----------------------------------------------------------------------------------

static psock *unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *data = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok || napi_unwrap(env, self, &data) != napi_ok ||
      data == NULL) {
    nv_throw_type(env, "not a PacketSocket");
    return NULL;
  }
  return data;
}

// Undoes a half-built socket after napi_wrap; the finalizer frees the rest.
static void abandon(napi_env env, psock *ps) {
  stop_io(ps);
  if (ps->actx != NULL) (void)napi_async_destroy(env, ps->actx);
  ps->actx = NULL;
}

// new PacketSocket(ifname, etherType (-1: any), udpDstPort (-1: none), cb)
static napi_value ps_new(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], self;
  NV_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  if (argc != 4) return nv_throw_type(env, "new PacketSocket(ifname, etherType, udpDstPort, callback)");
  char ifname[IFNAMSIZ];
  int r = nv_get_ifname(env, argv[0], ifname);
  if (r < 0) return NULL;
  if (r > 0) return nv_throw_errno(env, r, "PacketSocket", "(invalid interface name)");
  int64_t ether_type, udp_port;
  if (!nv_get_int(env, argv[1], -1, 0xffff, "etherType", &ether_type) ||
      !nv_get_int(env, argv[2], -1, 0xffff, "udpDstPort", &udp_port))
    return NULL;
  if (udp_port >= 0 && ether_type >= 0 && ether_type != ETH_P_IP)
    return nv_throw_type(env, "udpDstPort implies etherType 0x0800");
  napi_valuetype t;
  NV_CALL(env, napi_typeof(env, argv[3], &t));
  if (t != napi_function) return nv_throw_type(env, "callback must be a function");

  unsigned ifindex = if_nametoindex(ifname);
  if (ifindex == 0) return nv_throw_errno(env, errno, "if_nametoindex", ifname);
  // Always ETH_P_ALL: on a bridge port the bridge's rx handler takes every frame before protocol-specific
  // packet sockets see it; only ETH_P_ALL taps run first. The BPF program checks the EtherType itself.
  uint16_t proto = ETH_P_ALL;

  // Protocol 0 receives nothing until bind(), so no unfiltered frame can queue before the filter is on.
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return nv_throw_errno(env, errno, "socket(AF_PACKET)", ifname);
  prog p;
  build_filter(&p, (int)ether_type, (int)udp_port);
  struct sock_fprog fprog = {.len = (unsigned short)p.n, .filter = p.ins};
  int one = 1;
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(proto);
  sll.sll_ifindex = (int)ifindex;
  const char *call = NULL;
  int err = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) < 0) {
    err = errno;
    call = "setsockopt(SO_ATTACH_FILTER)";
  } else if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0 && errno != ENOPROTOOPT) {
    // ENOPROTOOPT: kernel < 4.20; own frames then come back and the caller's filter must cope.
    err = errno;
    call = "setsockopt(PACKET_IGNORE_OUTGOING)";
  } else if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
    err = errno;
    call = "bind";
  }
  if (err != 0) {
    (void)close(fd);
    return nv_throw_errno(env, err, call, ifname);
  }

  psock *ps = calloc(1, sizeof *ps);
  if (ps == NULL) {
    (void)close(fd);
    return nv_throw_errno(env, ENOMEM, "PacketSocket", ifname);
  }
  ps->env = env;
  ps->fd = fd;
  ps->ifindex = (int)ifindex;
  ps->open = true;
  if (napi_wrap(env, self, ps, on_finalize, NULL, NULL) != napi_ok) {
    (void)close(fd);
    free(ps);
    nv_throw_status(env, napi_generic_failure);
    return NULL;
  }
  // From here the finalizer owns ps; a failure only has to stop the I/O.
  uv_loop_t *loop;
  napi_value resource_name;
  napi_status s = napi_get_uv_event_loop(env, &loop);
  if (s == napi_ok) s = napi_create_reference(env, argv[3], 1, &ps->cb);
  if (s == napi_ok) s = napi_create_string_utf8(env, "nodevirt.PacketSocket", NAPI_AUTO_LENGTH, &resource_name);
  if (s == napi_ok) s = napi_async_init(env, self, resource_name, &ps->actx);
  if (s != napi_ok) {
    stop_io(ps);
    nv_throw_status(env, s);
    return NULL;
  }
  int uverr = uv_poll_init(loop, &ps->poll, fd);
  if (uverr == 0) {
    ps->poll.data = ps;
    ps->uv_alive = true;
    uverr = uv_poll_start(&ps->poll, UV_READABLE, on_poll);
  }
  if (uverr != 0) {
    abandon(env, ps);
    return nv_throw_errno(env, -uverr, "uv_poll_start", ifname);
  }
  s = napi_add_async_cleanup_hook(env, on_env_cleanup, ps, &ps->cleanup);
  if (s == napi_ok) s = napi_create_reference(env, self, 1, &ps->self);
  if (s != napi_ok) {
    abandon(env, ps);
    nv_throw_status(env, s);
    return NULL;
  }
  return self;
}

static napi_value ps_send(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  psock *ps = unwrap(env, info, &argc, argv);
  if (ps == NULL) return NULL;
  bool is_buf = false;
  NV_CALL(env, napi_is_buffer(env, argv[0], &is_buf));
  if (argc != 1 || !is_buf) return nv_throw_type(env, "send(frame: Buffer)");
  void *data;
  size_t len;
  NV_CALL(env, napi_get_buffer_info(env, argv[0], &data, &len));
  if (!ps->open) return nv_throw_errno(env, EBADF, "send", "(socket closed)");
  if (len < ETH_HLEN) return nv_throw_errno(env, EINVAL, "send", "(frame shorter than an Ethernet header)");
  struct sockaddr_ll to;
  memset(&to, 0, sizeof to);
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ps->ifindex;
  memcpy(&to.sll_protocol, (const unsigned char *)data + 12, 2);  // already network order
  to.sll_halen = ETH_ALEN;
  memcpy(to.sll_addr, data, ETH_ALEN);
  ssize_t n = sendto(ps->fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to);
  if (n < 0) return nv_throw_errno(env, errno, "sendto", NULL);
  if ((size_t)n != len) return nv_throw_errno(env, EIO, "sendto", "(short write)");
  ps->sent++;
  return NULL;
}

// Safe to call twice, and from inside the callback: nothing is delivered after it returns.
static napi_value ps_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  psock *ps = unwrap(env, info, &argc, NULL);
  if (ps == NULL || !ps->open) return NULL;
  stop_io(ps);
  if (ps->actx != NULL && !ps->in_callback) {
    (void)napi_async_destroy(env, ps->actx);
    ps->actx = NULL;
  }
  // The wrapper may now be collected; the finalizer frees ps once uv is done with it.
  if (ps->self != NULL) (void)napi_reference_unref(env, ps->self, NULL);
  return NULL;
}

static napi_status set_num(napi_env env, napi_value obj, const char *name, double v) {
  napi_value n;
  napi_status s = napi_create_double(env, v, &n);
  return s == napi_ok ? napi_set_named_property(env, obj, name, n) : s;
}

static napi_value ps_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  psock *ps = unwrap(env, info, &argc, NULL);
  if (ps == NULL) return NULL;
  if (ps->open) {
    // The kernel resets its counters on each read, so they are accumulated here.
    struct tpacket_stats st;
    socklen_t len = sizeof st;
    if (getsockopt(ps->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) ps->kernel_drops += st.tp_drops;
  }
  napi_value o;
  NV_CALL(env, napi_create_object(env, &o));
  NV_CALL(env, set_num(env, o, "received", ps->received));
  NV_CALL(env, set_num(env, o, "truncated", ps->truncated));
  NV_CALL(env, set_num(env, o, "sent", ps->sent));
  NV_CALL(env, set_num(env, o, "kernelDrops", ps->kernel_drops));
  NV_CALL(env, set_num(env, o, "ifindex", ps->ifindex));
  return o;
}

static napi_value ps_is_open(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  psock *ps = unwrap(env, info, &argc, NULL);
  if (ps == NULL) return NULL;
  napi_value b;
  NV_CALL(env, napi_get_boolean(env, ps->open, &b));
  return b;
}

// Packet socket closes handed off and not yet finished by the kernel.
static napi_value ps_closes_pending(napi_env env, napi_callback_info info) {
  pthread_mutex_lock(&cq_mu);
  double n = cq_pending;
  pthread_mutex_unlock(&cq_mu);
  napi_value v;
  NV_CALL(env, napi_create_double(env, n, &v));
  return v;
}

napi_value nv_init_packet(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"send", NULL, ps_send, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, ps_close, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, ps_stats, NULL, NULL, NULL, napi_default, NULL},
      {"isOpen", NULL, ps_is_open, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls, frame_max;
  NV_CALL(env, napi_define_class(env, "PacketSocket", NAPI_AUTO_LENGTH, ps_new, NULL, sizeof props / sizeof props[0],
                                 props, &cls));
  NV_CALL(env, napi_set_named_property(env, exports, "PacketSocket", cls));
  NV_CALL(env, napi_create_uint32(env, FRAME_MAX, &frame_max));
  NV_CALL(env, napi_set_named_property(env, exports, "FRAME_MAX", frame_max));
  NV_CALL(env, nv_set_fn(env, exports, "packetClosesPending", ps_closes_pending));
  return exports;
}
