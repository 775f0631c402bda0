// vrouter_io: synchronous, batched Linux packet I/O for the vrouter's packet
// path (TAP devices, UDP and raw IPv4 sockets, epoll, eventfd).
//
// Why a native addon at all: Node's fs.read on a TAP fd goes through the
// libuv thread pool, one round trip per packet, which measured about 4x
// slower than plain synchronous read()/write() in a dedicated thread (see
// shared/reference/performance-baselines.md). The packet path therefore runs
// in its own worker thread and calls these functions directly: each call is
// one (or a few) syscalls on a whole batch of frames, and blocking happens in
// exactly one place, epollWait.
//
// Conventions, shared by every function:
//  - Linux only. Every function is synchronous. Every fd this module creates
//    is non-blocking and close-on-exec; only epollWait may block, and only for
//    the timeout it is given.
//  - Frames live in one caller-owned Uint8Array (a Buffer is one); frame i is
//    at byte offsets[i] with length lengths[i]. Nothing is allocated per frame
//    and no JS object is created per frame: the per-syscall message arrays
//    are on the C++ stack, in chunks of kChunk.
//  - Bad arguments (wrong type, non-integer, out of range, a frame that does
//    not fit in the buffer) throw TypeError/RangeError before any syscall, so
//    no call can make the kernel touch memory outside the buffer.
//  - A failed syscall throws an Error whose message is
//    "<syscall> <object>: <strerror>", e.g. "read fd -1: Bad file
//    descriptor", with .code (the errno name, "EBADF"), .errno and .syscall.
//  - Batch calls never lose track of frames: they return how many frames from
//    the front of the batch are done, and the caller resumes from there.
//
// Thread model: N-API addons are loaded once per JS environment (main thread
// and each worker). All mutable state here is thread_local: the counters of
// ioStats() and the io_uring instance of readBatch/writeBatch, so each
// worker sees its own counters and has its own ring.

#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <linux/io_uring.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>

namespace {

// Messages per recvmmsg/sendmmsg call and events per epoll_wait. 256 is the
// vector size VPP uses; larger batches are simply done in several chunks.
// The stack cost is 256 * (64 + 16 + 16) bytes = 24 KiB per call.
constexpr int kChunk = 256;

// Socket buffer size asked for UDP and raw sockets. Bursts of several
// thousand 64-byte datagrams must fit while the worker is busy elsewhere;
// the default (~200 KiB) overflows at a few thousand small packets.
constexpr int kSocketBuffer = 4 * 1024 * 1024;

// Per-thread error counters (see ioStats()).
struct Stats {
  double txDropped = 0;      // frames dropped by writeBatch/sendBatch on a per-frame error
  int lastTxErrno = 0;       // errno of the most recent such drop
  double rxTruncated = 0;    // datagrams cut to `capacity` by recvBatch
  double batchSyscalls = 0;  // io_uring_enter, read and write calls made by readBatch/writeBatch
};
thread_local Stats tls_stats;

// ---------------------------------------------------------------------------
// Throwing errors
// ---------------------------------------------------------------------------

const char* ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  return strerrorname_np(err);  // "EBADF"; NULL for unknown numbers
#else
  (void)err;
  return nullptr;
#endif
}

void SetProperty(napi_env env, napi_value object, const char* key, napi_value value) {
  if (value != nullptr) napi_set_named_property(env, object, key, value);
}

// Throws Error("<syscall> <what>: <strerror>") with .code/.errno/.syscall,
// the same shape as Node's own system errors.
void ThrowErrno(napi_env env, const char* syscall, const char* what, int err) {
  char text[128];
  // GNU strerror_r (g++ defines _GNU_SOURCE): returns the string to use,
  // thread-safe unlike strerror().
  const char* reason = strerror_r(err, text, sizeof text);
  char message[512];
  if (what != nullptr && what[0] != '\0') {
    snprintf(message, sizeof message, "%s %s: %s", syscall, what, reason);
  } else {
    snprintf(message, sizeof message, "%s: %s", syscall, reason);
  }
  napi_value code = nullptr, msg = nullptr, error = nullptr, num = nullptr, sys = nullptr;
  const char* name = ErrnoName(err);
  if (name != nullptr) napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  if (napi_create_error(env, code, msg, &error) != napi_ok) {
    napi_throw_error(env, name, message);
    return;
  }
  napi_create_int32(env, err, &num);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys);
  SetProperty(env, error, "errno", num);
  SetProperty(env, error, "syscall", sys);
  napi_throw(env, error);
}

// "fd 5", the object named in most syscall errors.
void ThrowFdErrno(napi_env env, const char* syscall, int fd, int err) {
  char what[32];
  snprintf(what, sizeof what, "fd %d", fd);
  ThrowErrno(env, syscall, what, err);
}

void ThrowType(napi_env env, const char* fn, const char* what) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", fn, what);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
}

void ThrowRange(napi_env env, const char* message) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
}

// ---------------------------------------------------------------------------
// Argument parsing. Each Get* returns false after throwing; the caller then
// returns nullptr to JS.
// ---------------------------------------------------------------------------

constexpr size_t kMaxArgs = 8;

struct Args {
  napi_value v[kMaxArgs];
  size_t count;
};

bool GetArgs(napi_env env, napi_callback_info info, const char* fn, size_t want, Args* args) {
  args->count = kMaxArgs;
  if (napi_get_cb_info(env, info, &args->count, args->v, nullptr, nullptr) != napi_ok) {
    ThrowType(env, fn, "cannot read arguments");
    return false;
  }
  if (args->count < want) {
    char what[96];
    snprintf(what, sizeof what, "expected %zu arguments, got %zu", want, args->count);
    ThrowType(env, fn, what);
    return false;
  }
  return true;
}

// An integral JS number in [min, max]. Doubles are checked by hand rather
// than with napi_get_value_int32, which would silently turn 1.5 into 1 and
// NaN into 0: a wrong fd or offset must fail loudly, not alias another one.
bool GetInteger(napi_env env, napi_value value, const char* fn, const char* name, double min, double max,
                int64_t* out) {
  double d = 0;
  if (napi_get_value_double(env, value, &d) != napi_ok) {
    char what[96];
    snprintf(what, sizeof what, "%s must be a number", name);
    ThrowType(env, fn, what);
    return false;
  }
  if (!std::isfinite(d) || d != std::trunc(d)) {
    char what[96];
    snprintf(what, sizeof what, "%s must be an integer", name);
    ThrowType(env, fn, what);
    return false;
  }
  if (d < min || d > max) {
    char message[192];
    snprintf(message, sizeof message, "%s: %s must be in [%.0f, %.0f], got %.0f", fn, name, min, max, d);
    ThrowRange(env, message);
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

// Any int32 is accepted as an fd: a negative or closed one reaches the
// kernel and comes back as EBADF, which is the error the caller expects.
bool GetFd(napi_env env, napi_value value, const char* fn, const char* name, int* fd) {
  int64_t v = 0;
  if (!GetInteger(env, value, fn, name, INT32_MIN, INT32_MAX, &v)) return false;
  *fd = static_cast<int>(v);
  return true;
}

// A typed array of exactly the given element type, e.g. napi_int32_array.
// `nullable` also accepts null/undefined, reported as data == nullptr.
template <typename T>
bool GetTyped(napi_env env, napi_value value, napi_typedarray_type want, const char* fn, const char* name,
              const char* type_name, T** data, size_t* length, bool nullable = false) {
  *data = nullptr;
  *length = 0;
  napi_valuetype vt;
  if (nullable && napi_typeof(env, value, &vt) == napi_ok && (vt == napi_null || vt == napi_undefined)) {
    return true;
  }
  bool is_typed = false;
  napi_typedarray_type type;
  void* raw = nullptr;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, value, &type, length, &raw, nullptr, nullptr) != napi_ok || type != want) {
    char what[128];
    snprintf(what, sizeof what, "%s must be a %s%s", name, type_name, nullable ? " or null" : "");
    ThrowType(env, fn, what);
    return false;
  }
  *data = static_cast<T*>(raw);
  return true;
}

bool GetBuffer(napi_env env, napi_value value, const char* fn, uint8_t** data, size_t* length) {
  return GetTyped(env, value, napi_uint8_array, fn, "buffer", "Buffer or Uint8Array", data, length);
}

// `count` frames must have entries in every per-frame array.
bool CheckCount(napi_env env, const char* fn, const char* name, int64_t count, size_t array_length,
                const char* array_name) {
  if (static_cast<uint64_t>(count) > array_length) {
    char message[192];
    snprintf(message, sizeof message, "%s: %s (%lld) exceeds %s.length (%zu)", fn, name,
             static_cast<long long>(count), array_name, array_length);
    ThrowRange(env, message);
    return false;
  }
  return true;
}

// The arguments every batch call starts with (fd, buffer, offsets, lengths)
// and its frame count.
struct FrameArrays {
  int fd = 0;
  uint8_t* buffer = nullptr;
  size_t buffer_length = 0;
  int32_t* offsets = nullptr;
  int32_t* lengths = nullptr;
};

// Reads arguments 0-3 and the count at count_index (named count_name), which
// must fit offsets and lengths.
bool GetFrameArrays(napi_env env, const Args& args, const char* fn, size_t count_index, const char* count_name,
                    FrameArrays* out, int64_t* count) {
  size_t offsets_length = 0, lengths_length = 0;
  return GetFd(env, args.v[0], fn, "fd", &out->fd) && GetBuffer(env, args.v[1], fn, &out->buffer, &out->buffer_length) &&
         GetTyped(env, args.v[2], napi_int32_array, fn, "offsets", "Int32Array", &out->offsets, &offsets_length) &&
         GetTyped(env, args.v[3], napi_int32_array, fn, "lengths", "Int32Array", &out->lengths, &lengths_length) &&
         GetInteger(env, args.v[count_index], fn, count_name, 0, INT32_MAX, count) &&
         CheckCount(env, fn, count_name, *count, offsets_length, "offsets") &&
         CheckCount(env, fn, count_name, *count, lengths_length, "lengths");
}

// Every frame [offsets[i], offsets[i] + span) must lie inside the buffer.
// `spans` null means every frame spans `fixed_span` bytes (receive capacity).
// Checked up front for the whole batch, in 64-bit arithmetic, so that no
// syscall is made for a batch that contains a bad frame.
bool CheckFrames(napi_env env, const char* fn, size_t buffer_length, const int32_t* offsets, const int32_t* spans,
                 int64_t fixed_span, int64_t count) {
  for (int64_t i = 0; i < count; i++) {
    const int64_t offset = offsets[i];
    const int64_t span = spans != nullptr ? spans[i] : fixed_span;
    if (offset < 0 || span < 0 || offset + span > static_cast<int64_t>(buffer_length)) {
      char message[224];
      snprintf(message, sizeof message,
               "%s: frame %lld at offset %lld with length %lld does not fit in a buffer of %zu bytes", fn,
               static_cast<long long>(i), static_cast<long long>(offset), static_cast<long long>(span),
               buffer_length);
      ThrowRange(env, message);
      return false;
    }
  }
  return true;
}

// Reads frame i's offset and span again at the point of use and re-checks
// them. CheckFrames already validated the batch, but offsets/lengths may be
// views of a SharedArrayBuffer that another thread rewrites during the call;
// one relaxed atomic load per value and a second check keep the kernel from
// ever being handed memory outside the buffer even then.
bool LoadFrame(napi_env env, const char* fn, size_t buffer_length, const int32_t* offsets, const int32_t* spans,
               int64_t fixed_span, int64_t i, int64_t* offset, int64_t* span) {
  *offset = __atomic_load_n(&offsets[i], __ATOMIC_RELAXED);
  *span = spans != nullptr ? __atomic_load_n(&spans[i], __ATOMIC_RELAXED) : fixed_span;
  if (*offset < 0 || *span < 0 || *offset + *span > static_cast<int64_t>(buffer_length)) {
    char message[160];
    snprintf(message, sizeof message, "%s: frame %lld was changed to lie outside the buffer during the call", fn,
             static_cast<long long>(i));
    ThrowRange(env, message);
    return false;
  }
  return true;
}

napi_value Int(napi_env env, double value) {
  napi_value result = nullptr;
  napi_create_double(env, value, &result);
  return result;
}

napi_value Undefined(napi_env env) {
  napi_value result = nullptr;
  napi_get_undefined(env, &result);
  return result;
}

// Errors after which no later frame of the batch can succeed: the fd itself
// is wrong. Anything else (EINVAL for a runt frame, EMSGSIZE, EIO on a TAP
// that is down, ENETUNREACH, EPERM from a firewall, ENOBUFS from a full
// queue) concerns one frame, which is dropped and counted.
bool IsFdError(int err) {
  switch (err) {
    case EBADF:
    case EBADFD:  // /dev/net/tun fd that was never attached (no TUNSETIFF)
    case EFAULT:
    case ENOTSOCK:
    case EDESTADDRREQ:
    case ENOTCONN:
    case EPIPE:
    case EOPNOTSUPP:
    case EAFNOSUPPORT:
      return true;
    default:
      return false;
  }
}

void CountTxDrop(int err) {
  tls_stats.txDropped += 1;
  tls_stats.lastTxErrno = err;
}

void CloseQuietly(int fd) {
  const int saved = errno;
  close(fd);
  errno = saved;
}

// Best effort: the forced variant (CAP_NET_ADMIN, we usually run as root)
// ignores net.core.[rw]mem_max; without the capability, the plain one gets
// whatever the sysctl allows, which is still a working socket.
void SetSocketBuffer(int fd, int forced_option, int plain_option) {
  const int size = kSocketBuffer;
  if (setsockopt(fd, SOL_SOCKET, forced_option, &size, sizeof size) != 0) {
    setsockopt(fd, SOL_SOCKET, plain_option, &size, sizeof size);
  }
}

// ---------------------------------------------------------------------------
// TAP
// ---------------------------------------------------------------------------

// Reads a string argument of at most max_length bytes (no NUL inside) into out.
bool GetShortString(napi_env env, napi_value value, const char* fn, const char* name, char* out, size_t max_length) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, nullptr, 0, &length) != napi_ok) {
    char what[96];
    snprintf(what, sizeof what, "%s must be a string", name);
    ThrowType(env, fn, what);
    return false;
  }
  if (length > max_length) {
    char message[128];
    snprintf(message, sizeof message, "%s: %s must be at most %zu bytes, got %zu", fn, name, max_length, length);
    ThrowRange(env, message);
    return false;
  }
  napi_get_value_string_utf8(env, value, out, max_length + 1, &length);
  if (strlen(out) != length) {
    char message[96];
    snprintf(message, sizeof message, "%s: %s must not contain NUL", fn, name);
    ThrowRange(env, message);
    return false;
  }
  return true;
}

// Opens /dev/net/tun and attaches it to the TAP device named in ifr (created
// in the calling thread's network namespace when it does not exist). Returns
// the fd, or -1 with errno set and *syscall naming the failed call.
int OpenTap(struct ifreq* ifr, const char** syscall) {
  const int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *syscall = "open";
    return -1;
  }
  if (ioctl(fd, TUNSETIFF, ifr) != 0) {
    const int err = errno;
    CloseQuietly(fd);
    errno = err;
    *syscall = "TUNSETIFF";
    return -1;
  }
  return fd;
}

// { fd, name } for JS; name is what the kernel wrote back into ifr.
napi_value TapHandle(napi_env env, int fd, const struct ifreq& ifr) {
  char actual[IFNAMSIZ + 1] = {0};
  memcpy(actual, ifr.ifr_name, IFNAMSIZ);
  napi_value result = nullptr, fd_value = nullptr, name_value = nullptr;
  napi_create_object(env, &result);
  napi_create_int32(env, fd, &fd_value);
  napi_create_string_utf8(env, actual, NAPI_AUTO_LENGTH, &name_value);
  napi_set_named_property(env, result, "fd", fd_value);
  napi_set_named_property(env, result, "name", name_value);
  return result;
}

// tapOpen(name: string): { fd: number, name: string }
// Creates the TAP device `name` or attaches to an existing one of that name
// (an empty name lets the kernel pick tapN). IFF_NO_PI: each read/write is
// exactly one Ethernet frame, no 4-byte packet-info prefix. The device is not
// made persistent: it disappears when the last fd on it is closed.
napi_value TapOpen(napi_env env, napi_callback_info info) {
  const char* fn = "tapOpen";
  Args args;
  if (!GetArgs(env, info, fn, 1, &args)) return nullptr;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  if (!GetShortString(env, args.v[0], fn, "interface name", ifr.ifr_name, IFNAMSIZ - 1)) return nullptr;
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  const char* syscall = nullptr;
  const int fd = OpenTap(&ifr, &syscall);
  if (fd < 0) {
    const int err = errno;
    const char* what = strcmp(syscall, "open") == 0 ? "/dev/net/tun" : ifr.ifr_name[0] != 0 ? ifr.ifr_name : "(any)";
    ThrowErrno(env, syscall, what, err);
    return nullptr;
  }
  return TapHandle(env, fd, ifr);
}

// ---------------------------------------------------------------------------
// A pod's TAP, made and configured inside the pod's network namespace
// ---------------------------------------------------------------------------

// What podTapOpen sets up, read from its JS object argument.
struct PodInterface {
  char netns_path[256];
  struct ifreq ifr;  // ifr_name: the device's name in the pod (eth0)
  uint8_t mac[6];
  uint32_t mtu;
  struct in_addr ip;
  struct in_addr gateway;
};

// One rtnetlink request under construction: header, fixed part, attributes.
struct NetlinkRequest {
  alignas(NLMSG_ALIGNTO) char buffer[256];
  struct nlmsghdr* header() { return reinterpret_cast<struct nlmsghdr*>(buffer); }

  // Starts a request of `type` whose fixed part (ifinfomsg, ifaddrmsg, rtmsg) is `body`.
  void Begin(uint16_t type, uint16_t flags, const void* body, size_t body_length) {
    memset(buffer, 0, sizeof buffer);
    struct nlmsghdr* h = header();
    h->nlmsg_len = NLMSG_LENGTH(body_length);
    h->nlmsg_type = type;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    memcpy(NLMSG_DATA(h), body, body_length);
  }

  void Attribute(uint16_t type, const void* data, size_t length) {
    struct nlmsghdr* h = header();
    struct rtattr* attribute = reinterpret_cast<struct rtattr*>(buffer + NLMSG_ALIGN(h->nlmsg_len));
    attribute->rta_type = type;
    attribute->rta_len = RTA_LENGTH(length);
    memcpy(RTA_DATA(attribute), data, length);
    h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(attribute->rta_len);
  }
};

// Sends the request on a NETLINK_ROUTE socket and reads the kernel's
// acknowledgement. Returns 0, or the errno the kernel (or a syscall) gave.
int NetlinkTalk(int socket_fd, NetlinkRequest* request) {
  static_assert(sizeof request->buffer >= NLMSG_LENGTH(sizeof(struct ifinfomsg)) + 2 * RTA_SPACE(8),
                "a request's buffer holds its fixed part and attributes");
  struct nlmsghdr* h = request->header();
  if (send(socket_fd, h, h->nlmsg_len, 0) < 0) return errno;
  alignas(NLMSG_ALIGNTO) char answer[1024];
  for (;;) {
    ssize_t received = recv(socket_fd, answer, sizeof answer, 0);
    if (received < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    size_t left = static_cast<size_t>(received);
    for (struct nlmsghdr* reply = reinterpret_cast<struct nlmsghdr*>(answer); NLMSG_OK(reply, left);
         reply = NLMSG_NEXT(reply, left)) {
      if (reply->nlmsg_type == NLMSG_ERROR) return -static_cast<struct nlmsgerr*>(NLMSG_DATA(reply))->error;
    }
  }
}

// Adds a main-table IPv4 route out of interface `index`: a /32 to `address`
// (attribute RTA_DST) or the default route via it (RTA_GATEWAY), as
// `ip route add` does (protocol boot). Returns 0 or the errno.
int AddRoute(int rtnl, NetlinkRequest* request, uint8_t dst_len, uint8_t scope, uint16_t attribute, struct in_addr address,
             int index) {
  struct rtmsg route = {};
  route.rtm_family = AF_INET;
  route.rtm_dst_len = dst_len;
  route.rtm_table = RT_TABLE_MAIN;
  route.rtm_protocol = RTPROT_BOOT;
  route.rtm_scope = scope;
  route.rtm_type = RTN_UNICAST;
  request->Begin(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &route, sizeof route);
  request->Attribute(attribute, &address, sizeof address);
  request->Attribute(RTA_OIF, &index, sizeof index);
  return NetlinkTalk(rtnl, request);
}

// Creates the TAP in the calling thread's namespace (the pod's) and
// configures it as the kubelet plugin did: MAC, MTU, up; ip/32; the gateway
// on the link and the default route via it. Returns the TAP fd, or -1 with
// *failed naming the step and *err its errno (the device is gone then).
int MakePodInterface(PodInterface* pod, const char** failed, int* err) {
  const char* syscall = nullptr;
  const int tap = OpenTap(&pod->ifr, &syscall);
  if (tap < 0) {
    *err = errno;
    *failed = syscall;
    return -1;
  }
  const int index = static_cast<int>(if_nametoindex(pod->ifr.ifr_name));
  const int rtnl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (index == 0 || rtnl < 0) {
    *err = errno;
    *failed = index == 0 ? "if_nametoindex" : "socket(NETLINK_ROUTE)";
    if (rtnl >= 0) CloseQuietly(rtnl);
    CloseQuietly(tap);
    return -1;
  }
  NetlinkRequest request;
  // Flags last in the kernel's order: the MAC and MTU are set, then the link goes up.
  struct ifinfomsg link = {};
  link.ifi_family = AF_UNSPEC;
  link.ifi_index = index;
  link.ifi_flags = IFF_UP;
  link.ifi_change = IFF_UP;
  request.Begin(RTM_NEWLINK, 0, &link, sizeof link);
  request.Attribute(IFLA_ADDRESS, pod->mac, sizeof pod->mac);
  request.Attribute(IFLA_MTU, &pod->mtu, sizeof pod->mtu);
  *err = NetlinkTalk(rtnl, &request);
  *failed = "RTM_NEWLINK (MAC, MTU, up)";
  if (*err == 0) {
    struct ifaddrmsg address = {};
    address.ifa_family = AF_INET;
    address.ifa_prefixlen = 32;
    address.ifa_scope = RT_SCOPE_UNIVERSE;
    address.ifa_index = index;
    request.Begin(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &address, sizeof address);
    request.Attribute(IFA_LOCAL, &pod->ip, sizeof pod->ip);
    request.Attribute(IFA_ADDRESS, &pod->ip, sizeof pod->ip);
    *err = NetlinkTalk(rtnl, &request);
    *failed = "RTM_NEWADDR (ip/32)";
  }
  if (*err == 0) {
    *err = AddRoute(rtnl, &request, 32, RT_SCOPE_LINK, RTA_DST, pod->gateway, index);
    *failed = "RTM_NEWROUTE (gateway on the link)";
  }
  if (*err == 0) {
    *err = AddRoute(rtnl, &request, 0, RT_SCOPE_UNIVERSE, RTA_GATEWAY, pod->gateway, index);
    *failed = "RTM_NEWROUTE (default via the gateway)";
  }
  CloseQuietly(rtnl);
  if (*err != 0) {
    CloseQuietly(tap);
    return -1;
  }
  return tap;
}

bool GetPodString(napi_env env, napi_value object, const char* fn, const char* name, char* out, size_t max_length) {
  napi_value value = nullptr;
  napi_get_named_property(env, object, name, &value);
  return GetShortString(env, value, fn, name, out, max_length);
}

bool GetPodIpv4(napi_env env, napi_value object, const char* fn, const char* name, struct in_addr* out) {
  char text[16] = {0};
  if (!GetPodString(env, object, fn, name, text, sizeof text - 1)) return false;
  if (inet_pton(AF_INET, text, out) == 1) return true;
  char message[96];
  snprintf(message, sizeof message, "%s: %s is not an IPv4 address: '%s'", fn, name, text);
  ThrowRange(env, message);
  return false;
}

bool GetPodInterface(napi_env env, napi_value object, const char* fn, PodInterface* pod) {
  memset(pod, 0, sizeof *pod);
  char mac[18] = {0};
  if (!GetPodString(env, object, fn, "netnsPath", pod->netns_path, sizeof pod->netns_path - 1) ||
      !GetPodString(env, object, fn, "ifname", pod->ifr.ifr_name, IFNAMSIZ - 1) ||
      !GetPodString(env, object, fn, "mac", mac, sizeof mac - 1) || !GetPodIpv4(env, object, fn, "ip", &pod->ip) ||
      !GetPodIpv4(env, object, fn, "gateway", &pod->gateway)) {
    return false;
  }
  unsigned octets[6];
  char end = 0;
  if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &octets[0], &octets[1], &octets[2], &octets[3], &octets[4], &octets[5],
             &end) != 6 ||
      strlen(mac) != 17) {
    char message[96];
    snprintf(message, sizeof message, "%s: mac is not a MAC address: '%s'", fn, mac);
    ThrowRange(env, message);
    return false;
  }
  for (int i = 0; i < 6; i++) pod->mac[i] = static_cast<uint8_t>(octets[i]);
  napi_value mtu = nullptr;
  int64_t value = 0;
  napi_get_named_property(env, object, "mtu", &mtu);
  if (!GetInteger(env, mtu, fn, "mtu", 68, 65535, &value)) return false;
  pod->mtu = static_cast<uint32_t>(value);
  pod->ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  return true;
}

// podTapOpen({ netnsPath, ifname, mac, mtu, ip, gateway }): { fd, name }
// A pod's interface, made where it belongs: the calling thread enters the
// pod's network namespace (netnsPath, e.g. /run/netns/<pod>; setns affects
// this thread only), creates the TAP there under the pod's name, configures
// it over rtnetlink and comes back. The TAP fd keeps working from the
// vrouter's namespace. Creating it here and moving it (`ip link set netns`)
// costs the kernel tens of milliseconds per device, and an `ip` process per
// step costs milliseconds more: a port add is on the path to the pod's first
// packet. Errors name the step, the device and the namespace; on any error
// the device is gone.
napi_value PodTapOpen(napi_env env, napi_callback_info info) {
  const char* fn = "podTapOpen";
  Args args;
  PodInterface pod;
  if (!GetArgs(env, info, fn, 1, &args) || !GetPodInterface(env, args.v[0], fn, &pod)) return nullptr;
  const int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) {
    ThrowErrno(env, "open", "/proc/thread-self/ns/net", errno);
    return nullptr;
  }
  const int target = open(pod.netns_path, O_RDONLY | O_CLOEXEC);
  if (target < 0 || setns(target, CLONE_NEWNET) != 0) {
    const int err = errno;
    if (target >= 0) CloseQuietly(target);
    CloseQuietly(home);
    ThrowErrno(env, target < 0 ? "open" : "setns", pod.netns_path, err);
    return nullptr;
  }
  const char* failed = nullptr;
  int err = 0;
  const int tap = MakePodInterface(&pod, &failed, &err);
  // Back home before anything else runs on this thread: every socket the
  // worker opens later must be in the vrouter's own namespace.
  if (setns(home, CLONE_NEWNET) != 0) {
    fprintf(stderr, "vrouter_io: setns back to the vrouter's network namespace failed: %s\n", strerror(errno));
    abort();
  }
  CloseQuietly(target);
  CloseQuietly(home);
  if (tap < 0) {
    char what[IFNAMSIZ + sizeof pod.netns_path + 8];
    snprintf(what, sizeof what, "%s in %s", pod.ifr.ifr_name, pod.netns_path);
    ThrowErrno(env, failed, strcmp(failed, "open") == 0 ? "/dev/net/tun" : what, err);
    return nullptr;
  }
  return TapHandle(env, tap, pod.ifr);
}

// close(fd): void
napi_value Close(napi_env env, napi_callback_info info) {
  const char* fn = "close";
  Args args;
  int fd = 0;
  if (!GetArgs(env, info, fn, 1, &args) || !GetFd(env, args.v[0], fn, "fd", &fd)) return nullptr;
  // No retry on EINTR: on Linux the fd is released even then, and a retry
  // could close an fd another thread has just been given.
  if (close(fd) != 0 && errno != EINTR) {
    ThrowFdErrno(env, "close", fd, errno);
    return nullptr;
  }
  return Undefined(env);
}

// ---------------------------------------------------------------------------
// epoll and eventfd
// ---------------------------------------------------------------------------

// epollCreate(): number
napi_value EpollCreate(napi_env env, napi_callback_info /*info*/) {
  const int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) {
    ThrowErrno(env, "epoll_create1", "", errno);
    return nullptr;
  }
  return Int(env, fd);
}

// epollAdd(epfd, fd, tag): void. Level-triggered EPOLLIN; `tag` (any int32
// or uint32) comes back from epollWait, so the worker maps it to its port
// without a lookup by fd.
napi_value EpollAdd(napi_env env, napi_callback_info info) {
  const char* fn = "epollAdd";
  Args args;
  int epfd = 0, fd = 0;
  int64_t tag = 0;
  if (!GetArgs(env, info, fn, 3, &args) || !GetFd(env, args.v[0], fn, "epfd", &epfd) ||
      !GetFd(env, args.v[1], fn, "fd", &fd) || !GetInteger(env, args.v[2], fn, "tag", INT32_MIN, UINT32_MAX, &tag)) {
    return nullptr;
  }
  struct epoll_event event;
  memset(&event, 0, sizeof event);
  event.events = EPOLLIN;
  event.data.u32 = static_cast<uint32_t>(tag);
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) != 0) {
    ThrowFdErrno(env, "epoll_ctl(ADD)", fd, errno);
    return nullptr;
  }
  return Undefined(env);
}

// epollDel(epfd, fd): void
napi_value EpollDel(napi_env env, napi_callback_info info) {
  const char* fn = "epollDel";
  Args args;
  int epfd = 0, fd = 0;
  if (!GetArgs(env, info, fn, 2, &args) || !GetFd(env, args.v[0], fn, "epfd", &epfd) ||
      !GetFd(env, args.v[1], fn, "fd", &fd)) {
    return nullptr;
  }
  struct epoll_event event;  // ignored for DEL, but kernels before 2.6.9 wanted one
  memset(&event, 0, sizeof event);
  if (epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &event) != 0) {
    ThrowFdErrno(env, "epoll_ctl(DEL)", fd, errno);
    return nullptr;
  }
  return Undefined(env);
}

// epollWait(epfd, tags: Int32Array, timeoutMs): number
// Blocks up to timeoutMs (-1: forever, 0: poll), fills tags[0..n) with the
// tags of ready fds (at most min(tags.length, 256) per call) and returns n.
// A signal (EINTR) returns 0, as a timeout does.
napi_value EpollWait(napi_env env, napi_callback_info info) {
  const char* fn = "epollWait";
  Args args;
  int epfd = 0;
  int32_t* tags = nullptr;
  size_t tags_length = 0;
  int64_t timeout = 0;
  if (!GetArgs(env, info, fn, 3, &args) || !GetFd(env, args.v[0], fn, "epfd", &epfd) ||
      !GetTyped(env, args.v[1], napi_int32_array, fn, "tags", "Int32Array", &tags, &tags_length) ||
      !GetInteger(env, args.v[2], fn, "timeoutMs", -1, INT32_MAX, &timeout)) {
    return nullptr;
  }
  if (tags_length == 0) {
    ThrowRange(env, "epollWait: tags must have at least one element");
    return nullptr;
  }
  struct epoll_event events[kChunk];
  const int max_events = tags_length < static_cast<size_t>(kChunk) ? static_cast<int>(tags_length) : kChunk;
  const int n = epoll_wait(epfd, events, max_events, static_cast<int>(timeout));
  if (n < 0) {
    if (errno == EINTR) return Int(env, 0);
    ThrowFdErrno(env, "epoll_wait", epfd, errno);
    return nullptr;
  }
  for (int i = 0; i < n; i++) tags[i] = static_cast<int32_t>(events[i].data.u32);
  return Int(env, n);
}

// eventfdCreate(): number. Non-blocking: another thread signals it to wake a
// worker blocked in epollWait on it.
napi_value EventfdCreate(napi_env env, napi_callback_info /*info*/) {
  const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) {
    ThrowErrno(env, "eventfd", "", errno);
    return nullptr;
  }
  return Int(env, fd);
}

// eventfdSignal(fd): void. Adds 1 to the counter (makes the fd readable).
napi_value EventfdSignal(napi_env env, napi_callback_info info) {
  const char* fn = "eventfdSignal";
  Args args;
  int fd = 0;
  if (!GetArgs(env, info, fn, 1, &args) || !GetFd(env, args.v[0], fn, "fd", &fd)) return nullptr;
  const uint64_t one = 1;
  for (;;) {
    if (write(fd, &one, sizeof one) == static_cast<ssize_t>(sizeof one)) break;
    if (errno == EINTR) continue;
    // EAGAIN: the counter is at its maximum, so the fd is already readable
    // and the wake-up this call exists for is guaranteed anyway.
    if (errno == EAGAIN) break;
    ThrowFdErrno(env, "write(eventfd)", fd, errno);
    return nullptr;
  }
  return Undefined(env);
}

// eventfdDrain(fd): number. Reads and resets the counter; returns the number
// of signals since the last drain (0 if none).
napi_value EventfdDrain(napi_env env, napi_callback_info info) {
  const char* fn = "eventfdDrain";
  Args args;
  int fd = 0;
  if (!GetArgs(env, info, fn, 1, &args) || !GetFd(env, args.v[0], fn, "fd", &fd)) return nullptr;
  uint64_t value = 0;
  for (;;) {
    if (read(fd, &value, sizeof value) == static_cast<ssize_t>(sizeof value)) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return Int(env, 0);
    ThrowFdErrno(env, "read(eventfd)", fd, errno);
    return nullptr;
  }
  return Int(env, static_cast<double>(value));
}

// ---------------------------------------------------------------------------
// io_uring: many TAP reads or writes per system call
// ---------------------------------------------------------------------------
//
// Why: a TAP moves exactly one frame per read(2)/write(2) (there is no
// readv/recvmmsg of several frames), so forwarding between TAPs cost two
// syscalls per frame. With io_uring one io_uring_enter(2) carries a whole
// batch: the kernel runs the same tun read/write code for each frame, minus
// a user/kernel round trip per frame. What that saves is the syscall entry
// and exit, not the tun work itself: on the 6.18 VM this was written on,
// about 50 ns of a ~300 ns TAP read and ~30 ns of a TAP write whose frame
// the kernel drops at once (64-frame batches).
//
// Raw syscalls and <linux/io_uring.h>, not liburing: `npm ci` must build this
// on a fresh machine with nothing but g++ and the kernel headers, and we use
// a tiny subset (submit a batch, wait for all of it).
//
// How it is used, and why each choice:
//  - One ring per thread (thread_local), created on the thread's first
//    readBatch/writeBatch. Only that thread ever submits to it, which is what
//    IORING_SETUP_SINGLE_ISSUER promises; DEFER_TASKRUN then runs completion
//    work only inside our own io_uring_enter, never by interrupting the
//    thread later (no IPIs, no task_work while JS runs).
//  - Every call leaves the ring empty: it submits k <= kRingEntries SQEs,
//    waits until all k have completed and reaps every CQE before returning.
//    So calls never see each other's completions, the CQ (2 * SQ entries)
//    cannot overflow, and nothing is pending while JS runs or across calls.
//  - Every SQE carries RWF_NOWAIT. A TAP fd is O_NONBLOCK, but io_uring does
//    not let O_NONBLOCK alone end a read: on a file that supports
//    non-blocking I/O (tun sets FMODE_NOWAIT) it turns -EAGAIN into "arm a
//    poll and retry when data arrives", i.e. the read would stay pending
//    until the next frame. RWF_NOWAIT makes it complete at once with -EAGAIN,
//    the same answer read(2) gives. It also guarantees that no request is
//    handed to an io-wq worker thread (a file without FMODE_NOWAIT rejects
//    RWF_NOWAIT with -EOPNOTSUPP instead, and we use read/write for it).
//  - Hence every request is issued inline, by io_uring_enter itself, one
//    after the other in SQE order (io_submit_sqes issues each SQE before
//    looking at the next one). That is what keeps frames in order: read j
//    runs after read j-1 has returned and takes the next frame the device
//    queued. See ReadWithRing for the one case where a gap can appear.
//  - If io_uring cannot be used (io_uring_setup fails with ENOSYS: old
//    kernel or seccomp; EPERM: kernel.io_uring_disabled=2 or a container
//    policy; ENOMEM: locked-memory limit), or VROUTER_IO_URING=0 is set, the
//    thread uses the read(2)/write(2) loops for good. So does a thread whose
//    ring ever fails in a way we do not expect (the batch in progress
//    finishes with the loops).

#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)  // Linux 6.6; the build's kernel headers may predate it
#endif

// SQEs per io_uring_enter, like kChunk for recvmmsg. A TAP queue holds 1000
// frames by default (txqueuelen); longer batches take several calls.
constexpr unsigned kRingEntries = kChunk;

// A CQE result no request can produce: "this SQE never reported back".
constexpr int32_t kNoResult = INT32_MIN;

int IoUringSetup(unsigned entries, struct io_uring_params* params) {
  return static_cast<int>(syscall(__NR_io_uring_setup, entries, params));
}

int IoUringEnter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
  return static_cast<int>(syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, nullptr, 0));
}

int IoUringRegister(int fd, unsigned opcode, void* arg, unsigned nr_args) {
  return static_cast<int>(syscall(__NR_io_uring_register, fd, opcode, arg, nr_args));
}

// The mapped SQ and CQ rings of one io_uring instance.
class Ring {
 public:
  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() { Close(); }

  bool IsOpen() const { return fd_ >= 0; }

  // Creates the ring. False (errno set) when this kernel or process cannot
  // have one; the caller then uses read/write.
  bool Open() {
    // Cheapest first. EINVAL means "flag unknown to this kernel" (SUBMIT_ALL
    // 5.18, SINGLE_ISSUER and DEFER_TASKRUN 6.1, NO_SQARRAY 6.6): retry with
    // fewer. Any other error means no io_uring at all.
    static const unsigned kFlagSets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_NO_SQARRAY,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        0,
    };
    struct io_uring_params params;
    int fd = -1;
    for (const unsigned flags : kFlagSets) {
      memset(&params, 0, sizeof params);
      params.flags = flags;
      fd = IoUringSetup(kRingEntries, &params);
      if (fd >= 0 || errno != EINVAL) break;
    }
    if (fd < 0) return false;
    fd_ = fd;
    // NODROP (5.5): completions are never lost. RW_CUR_POS (5.6): offset -1
    // means "the file position", as read(2)/write(2) do.
    const unsigned needed = IORING_FEAT_NODROP | IORING_FEAT_RW_CUR_POS;
    if ((params.features & needed) != needed || params.sq_entries < kRingEntries ||
        params.cq_entries < 2 * kRingEntries) {
      Close();
      errno = ENOSYS;
      return false;
    }
    if (!Map(params)) {
      const int err = errno;
      Close();
      errno = err;
      return false;
    }
    // Optional (5.18): register the ring fd with this thread, so that
    // io_uring_enter skips the fd table lookup (an atomic refcount in a
    // multithreaded process) on every call.
    struct io_uring_rsrc_update update;
    memset(&update, 0, sizeof update);
    update.offset = UINT32_MAX;  // any free slot
    update.data = static_cast<uint64_t>(fd_);
    if (IoUringRegister(fd_, IORING_REGISTER_RING_FDS, &update, 1) == 1) {
      enter_fd_ = static_cast<int>(update.offset);
      enter_flags_ = IORING_ENTER_REGISTERED_RING;
    } else {
      enter_fd_ = fd_;
      enter_flags_ = 0;
    }
    return true;
  }

  // The j-th SQE of the batch being prepared (j < kRingEntries), zeroed.
  struct io_uring_sqe* Sqe(unsigned j) {
    struct io_uring_sqe* sqe = &sqes_[(sq_tail_ + j) & sq_mask_];
    memset(sqe, 0, sizeof *sqe);
    return sqe;
  }

  // Submits the k SQEs prepared with Sqe(0..k-1), each with user_data = its
  // index, and waits until all k have completed: results[j] = the CQE result
  // of SQE j (bytes, or -errno). False if io_uring_enter failed in a way
  // that leaves some SQE without a result (results[j] stays kNoResult); the
  // ring must not be used again then.
  bool Run(unsigned k, int32_t* results) {
    for (unsigned j = 0; j < k; j++) results[j] = kNoResult;
    // Release: the kernel must see the SQE contents before the new tail.
    sq_tail_ += k;
    __atomic_store_n(sq_ktail_, sq_tail_, __ATOMIC_RELEASE);
    // Normally one call: submit all k, wait for all k. Asking for k
    // completions is safe even if the kernel takes fewer SQEs than offered
    // (a ring without SUBMIT_ALL stops at an SQE it rejects): io_uring_enter
    // then returns the count at once, without waiting, and the loop offers
    // the rest again.
    unsigned submitted = 0, reaped = 0;
    while (reaped < k) {
      tls_stats.batchSyscalls += 1;
      const int n = IoUringEnter(enter_fd_, k - submitted, k - reaped, IORING_ENTER_GETEVENTS | enter_flags_);
      if (n < 0) {
        // EINTR: a signal ended the wait (a submission is reported by its
        // count, never by an error); just wait again.
        if (errno != EINTR) {
          Abandon();
          return false;
        }
      } else if (n == 0 && submitted < k) {
        Abandon();  // the kernel took none of our SQEs: no progress possible
        return false;
      } else {
        submitted += static_cast<unsigned>(n);
      }
      reaped += Reap(results, k);
    }
    return true;
  }

 private:
  bool Map(const struct io_uring_params& p) {
    sq_size_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    cq_size_ = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    const bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single) sq_size_ = cq_size_ = sq_size_ > cq_size_ ? sq_size_ : cq_size_;
    // MAP_POPULATE: fault the pages in now, not on the packet path.
    const int prot = PROT_READ | PROT_WRITE, flags = MAP_SHARED | MAP_POPULATE;
    sq_ring_ = mmap(nullptr, sq_size_, prot, flags, fd_, IORING_OFF_SQ_RING);
    if (sq_ring_ == MAP_FAILED) return false;
    if (single) {
      cq_ring_ = sq_ring_;
    } else {
      cq_ring_ = mmap(nullptr, cq_size_, prot, flags, fd_, IORING_OFF_CQ_RING);
      if (cq_ring_ == MAP_FAILED) return false;
    }
    sqes_size_ = p.sq_entries * sizeof(struct io_uring_sqe);
    void* sqes = mmap(nullptr, sqes_size_, prot, flags, fd_, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) return false;
    sqes_ = static_cast<struct io_uring_sqe*>(sqes);

    char* sq = static_cast<char*>(sq_ring_);
    char* cq = static_cast<char*>(cq_ring_);
    sq_ktail_ = reinterpret_cast<unsigned*>(sq + p.sq_off.tail);
    sq_mask_ = *reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
    sq_tail_ = *sq_ktail_;
    if (!(p.flags & IORING_SETUP_NO_SQARRAY)) {
      // The classic indirection array: slot i always names SQE i, so the
      // SQEs themselves form the queue, as with NO_SQARRAY.
      unsigned* array = reinterpret_cast<unsigned*>(sq + p.sq_off.array);
      for (unsigned i = 0; i < p.sq_entries; i++) array[i] = i;
    }
    cq_khead_ = reinterpret_cast<unsigned*>(cq + p.cq_off.head);
    cq_ktail_ = reinterpret_cast<unsigned*>(cq + p.cq_off.tail);
    cq_mask_ = *reinterpret_cast<unsigned*>(cq + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<struct io_uring_cqe*>(cq + p.cq_off.cqes);
    return true;
  }

  // Moves every available CQE into results[user_data]; returns how many.
  unsigned Reap(int32_t* results, unsigned k) {
    unsigned head = *cq_khead_;  // only we move the head
    // Acquire: the CQE contents are visible once the tail is.
    const unsigned tail = __atomic_load_n(cq_ktail_, __ATOMIC_ACQUIRE);
    unsigned n = 0;
    for (; head != tail; head++, n++) {
      const struct io_uring_cqe* cqe = &cqes_[head & cq_mask_];
      if (cqe->user_data < k) results[cqe->user_data] = cqe->res;
    }
    // Release: we are done reading those CQEs before the kernel reuses them.
    __atomic_store_n(cq_khead_, head, __ATOMIC_RELEASE);
    return n;
  }

  // After an unexpected io_uring_enter error (it would take a kernel that
  // cannot allocate a request; never seen in normal operation): closing the
  // ring cancels whatever it still holds, and ThreadRing() then sends this
  // thread to the read/write loops for good.
  void Abandon() { Close(); }

  void Close() {
    if (enter_flags_ & IORING_ENTER_REGISTERED_RING) {
      struct io_uring_rsrc_update update;
      memset(&update, 0, sizeof update);
      update.offset = static_cast<uint32_t>(enter_fd_);
      IoUringRegister(fd_, IORING_UNREGISTER_RING_FDS, &update, 1);
      enter_flags_ = 0;
    }
    if (sqes_ != nullptr) munmap(sqes_, sqes_size_);
    if (cq_ring_ != nullptr && cq_ring_ != MAP_FAILED && cq_ring_ != sq_ring_) munmap(cq_ring_, cq_size_);
    if (sq_ring_ != nullptr && sq_ring_ != MAP_FAILED) munmap(sq_ring_, sq_size_);
    if (fd_ >= 0) CloseQuietly(fd_);
    sqes_ = nullptr;
    cq_ring_ = sq_ring_ = nullptr;
    fd_ = -1;
  }

  int fd_ = -1;
  int enter_fd_ = -1;        // fd_, or its registered index with IORING_ENTER_REGISTERED_RING
  unsigned enter_flags_ = 0;
  void* sq_ring_ = nullptr;
  void* cq_ring_ = nullptr;
  size_t sq_size_ = 0, cq_size_ = 0, sqes_size_ = 0;
  struct io_uring_sqe* sqes_ = nullptr;
  unsigned* sq_ktail_ = nullptr;
  unsigned sq_tail_ = 0;  // our copy: only we move the SQ tail
  unsigned sq_mask_ = 0;
  unsigned* cq_khead_ = nullptr;
  unsigned* cq_ktail_ = nullptr;
  unsigned cq_mask_ = 0;
  struct io_uring_cqe* cqes_ = nullptr;
};

enum class RingState : uint8_t { kUntried, kActive, kOff };
thread_local RingState tls_ring_state = RingState::kUntried;
thread_local Ring tls_ring;

// VROUTER_IO_URING=0 (or off/false/no) keeps the read/write loops: for
// comparing both paths, and as an escape hatch.
bool IoUringDisabledByEnvironment() {
  const char* value = getenv("VROUTER_IO_URING");
  if (value == nullptr) return false;
  return strcmp(value, "0") == 0 || strcasecmp(value, "off") == 0 || strcasecmp(value, "false") == 0 ||
         strcasecmp(value, "no") == 0;
}

// This thread's ring, created on first use; nullptr: use read/write.
Ring* ThreadRing() {
  if (tls_ring_state == RingState::kActive) {
    if (tls_ring.IsOpen()) return &tls_ring;
    tls_ring_state = RingState::kOff;  // abandoned after a failure
    return nullptr;
  }
  if (tls_ring_state == RingState::kOff) return nullptr;
  const bool usable = !IoUringDisabledByEnvironment() && tls_ring.Open();
  tls_ring_state = usable ? RingState::kActive : RingState::kOff;
  return usable ? &tls_ring : nullptr;
}

// io_uring pays off only for batches of a few frames. On the VM this was
// measured on, a request that moves a frame costs the ring some 30-50 ns
// less than a read(2) or write(2) syscall, but one that finds a TAP or
// eventfd empty (EAGAIN) costs about as much as the whole read(2) (~200 ns),
// and io_uring_enter itself adds ~140 ns per call. So a batch expected to
// move fewer than kMinRingFrames frames uses the read/write loop: a write of
// fewer frames, or a read on an fd whose previous readBatch got fewer than
// kMinRingFrames - 1 (an idle port: usually one frame, and then the read
// that finds the queue empty).
constexpr int64_t kMinRingFrames = 4;

// Frames the previous readBatch on an fd got (hashed by fd: a collision only
// costs a worse guess). It picks the path, and the size of the first wave of
// reads: one more than last time, so a port that keeps getting n frames per
// batch costs one call of n + 1 reads (the last finds the queue empty, as
// with read(2)), and a busy port that fills whole batches one call of `max`.
constexpr int kReadHints = 256;
thread_local uint16_t tls_read_hint[kReadHints];

uint16_t& ReadHint(int fd) { return tls_read_hint[static_cast<unsigned>(fd) % kReadHints]; }

enum class RingOutcome {
  kDone,     // the call's result is final
  kThrown,   // a JS exception is pending
  kUseLoop,  // continue with the read/write loop from the frame reached
};

// readBatch through the ring. *count: frames read so far (final with kDone,
// where the loop continues with kUseLoop).
//
// Order. Reads are issued one after the other in SQE order (see above), so
// the successful ones hold frames in the order the device queued them. A
// read can only find the queue empty (-EAGAIN) and a later one of the same
// submission still get a frame if the frame arrived in between; that frame
// is moved down into the first free slot, so frames [0, n) are always
// consecutive device frames, in order, and the batch ends there (as it
// ends at EAGAIN with read(2)). Nothing read is ever dropped.
//
// Waves. Reads are submitted in waves: `wave` reads first (see ReadHint),
// then twice as many as the last wave while every read of a wave got a
// frame, up to max. Reads past the end of the queue cost; a wave that comes
// up short of the queue costs another io_uring_enter.
RingOutcome ReadWithRing(napi_env env, const char* fn, Ring* ring, int fd, uint8_t* buffer, size_t buffer_length,
                         const int32_t* offsets, int32_t* lengths, int64_t max, int64_t capacity, unsigned wave,
                         int64_t* count) {
  uint8_t* slots[kRingEntries];
  int32_t results[kRingEntries];
  while (*count < max) {
    const int64_t base = *count;
    unsigned k = wave < kRingEntries ? wave : kRingEntries;
    if (max - base < k) k = static_cast<unsigned>(max - base);
    for (unsigned j = 0; j < k; j++) {
      int64_t offset = 0, span = 0;
      if (!LoadFrame(env, fn, buffer_length, offsets, nullptr, capacity, base + j, &offset, &span)) {
        return RingOutcome::kThrown;
      }
      slots[j] = buffer + offset;
      struct io_uring_sqe* sqe = ring->Sqe(j);
      sqe->opcode = IORING_OP_READ;
      sqe->fd = fd;
      sqe->addr = reinterpret_cast<uintptr_t>(slots[j]);
      sqe->len = static_cast<uint32_t>(span);
      sqe->off = UINT64_MAX;  // -1: the file position, like read(2)
      sqe->rw_flags = RWF_NOWAIT;
      sqe->user_data = j;
    }
    const bool ran = ring->Run(k, results);
    unsigned got = 0;
    int error = 0;  // the first error other than EAGAIN, in SQE order
    for (unsigned j = 0; j < k; j++) {
      const int32_t result = results[j];
      if (result >= 0) {
        // A gap before this frame (see above): close it. memmove, as a
        // caller may (pointlessly, but legally) give overlapping slots.
        if (got != j) memmove(slots[got], slots[j], static_cast<size_t>(result));
        lengths[base + got] = result;
        got++;
      } else if (result != kNoResult && result != -EAGAIN && error == 0) {
        error = -result;
      }
    }
    *count = base + got;
    if (!ran) return RingOutcome::kUseLoop;  // the ring is closed now: finish with read(2)
    if (*count == 0 && error != 0) {
      // Nothing read and an error: let read(2) reproduce it, so the thrown
      // error is exactly the one the loop throws ("read fd 5: ..."). It also
      // covers an fd io_uring cannot do without blocking (-EOPNOTSUPP for
      // RWF_NOWAIT), which read(2) then simply reads.
      return RingOutcome::kUseLoop;
    }
    if (got < k) break;  // queue empty, or an error that ends the batch (it recurs next call)
    wave *= 2;
  }
  return RingOutcome::kDone;
}

// writeBatch through the ring. *done: frames done so far (final with kDone,
// where the loop continues with kUseLoop).
//
// Order. The writes are issued one after the other in SQE order (see above),
// so frames leave in batch order, as with the write(2) loop.
//
// Why the writes are not linked (IOSQE_IO_LINK): a link makes the kernel
// start each write from task_work after the previous one completed, which
// measured about 55 ns per frame more than the unlinked writes (on a TAP
// whose kernel side dropped the frames at once, 64-frame batches: linked
// ~465 ns, unlinked ~410 ns, write(2) loop ~440 ns per frame): more than the
// syscall it saves. Unlinked writes keep writeBatch's contract this way:
//  - Every frame up to the last one written in a submission is done: written,
//    or, if its own write failed (whatever the error, EAGAIN included),
//    dropped and counted, since frames after it are already out and a retry
//    would reorder it. (The write(2) loop would have returned at an EAGAIN;
//    with the ring, a frame can only get EAGAIN and a later one succeed if
//    the fd became writable again within the same system call.)
//  - The failures after the last written frame get exactly the loop's
//    treatment, one by one: EAGAIN returns (frames [done, count) were not
//    written and can be retried), an fd error throws or ends the batch, any
//    other error drops that frame and looks at the next.
// (A TAP practically never answers EAGAIN: a small frame goes through
// tun_build_skb, which does not charge the socket send buffer.)
RingOutcome WriteWithRing(napi_env env, const char* fn, Ring* ring, int fd, uint8_t* buffer, size_t buffer_length,
                          const int32_t* offsets, const int32_t* lengths, int64_t count, int64_t* done) {
  int32_t results[kRingEntries];
  while (*done < count) {
    const int64_t base = *done;
    const unsigned k = count - base < kRingEntries ? static_cast<unsigned>(count - base) : kRingEntries;
    for (unsigned j = 0; j < k; j++) {
      int64_t offset = 0, span = 0;
      if (!LoadFrame(env, fn, buffer_length, offsets, lengths, 0, base + j, &offset, &span)) {
        return RingOutcome::kThrown;
      }
      struct io_uring_sqe* sqe = ring->Sqe(j);
      sqe->opcode = IORING_OP_WRITE;
      sqe->fd = fd;
      sqe->addr = reinterpret_cast<uintptr_t>(buffer + offset);
      sqe->len = static_cast<uint32_t>(span);
      sqe->off = UINT64_MAX;  // -1: the file position, like write(2)
      sqe->rw_flags = RWF_NOWAIT;
      sqe->user_data = j;
    }
    const bool ran = ring->Run(k, results);
    // Results [0, known) are known (all of them unless the ring failed).
    unsigned known = 0;
    while (known < k && results[known] != kNoResult) known++;
    unsigned written_until = 0;  // 1 + the index of the last frame written
    for (unsigned j = 0; j < known; j++) {
      if (results[j] >= 0) written_until = j + 1;
    }
    bool again = false;  // EINTR: submit the rest again
    for (unsigned j = 0; j < known && !again; j++) {
      const int32_t result = results[j];
      if (result >= 0) {
        // Written (like write(2) >= 0 in the loop, a short write on some
        // other kind of fd counts as done).
        *done += 1;
        continue;
      }
      const int err = -result;
      if (j < written_until) {
        CountTxDrop(err);  // failed, but a later frame is out: see above
        *done += 1;
        continue;
      }
      // No frame after this one was written: decide as the loop does.
      if (err == EAGAIN) return RingOutcome::kDone;  // full: frames [done, count) not written
      if (err == EINTR) {
        again = true;
      } else if (IsFdError(err)) {
        // With no frame done, let write(2) reproduce the error so that it is
        // thrown exactly as the loop throws it; this also covers an fd that
        // refuses RWF_NOWAIT (-EOPNOTSUPP), which write(2) then just writes.
        return *done == 0 ? RingOutcome::kUseLoop : RingOutcome::kDone;
      } else {
        CountTxDrop(err);
        *done += 1;
      }
    }
    if (!ran) return RingOutcome::kUseLoop;  // the ring is closed now: finish with write(2)
  }
  return RingOutcome::kDone;
}

// ---------------------------------------------------------------------------
// Frame I/O on TAP fds. A TAP moves one frame per read(2)/write(2); with
// io_uring (above) one system call carries a whole batch of them, otherwise
// the loops below make one call per frame.
// ---------------------------------------------------------------------------

// readBatch(fd, buffer, offsets, lengths, max, capacity): number
// Reads frames into buffer[offsets[i] .. offsets[i] + capacity) and their
// lengths into lengths[i], until the fd is drained (EAGAIN) or `max` frames
// have been read; returns the count. A frame longer than `capacity` is cut
// by the kernel, so capacity must be at least MTU + 14.
// A failure on the first read throws; one after some frames returns those
// frames (the error recurs, and is thrown, on the next call).
napi_value ReadBatch(napi_env env, napi_callback_info info) {
  const char* fn = "readBatch";
  Args args;
  FrameArrays frames;
  int64_t max = 0, capacity = 0;
  if (!GetArgs(env, info, fn, 6, &args) || !GetFrameArrays(env, args, fn, 4, "max", &frames, &max) ||
      !GetInteger(env, args.v[5], fn, "capacity", 1, INT32_MAX, &capacity) ||
      !CheckFrames(env, fn, frames.buffer_length, frames.offsets, nullptr, capacity, max)) {
    return nullptr;
  }
  const auto& [fd, buffer, buffer_length, offsets, lengths] = frames;
  int64_t count = 0;
  uint16_t& hint = ReadHint(fd);
  const int64_t expected = hint + 1 < max ? hint + 1 : max;  // frames this call will likely get
  Ring* ring = expected >= kMinRingFrames ? ThreadRing() : nullptr;
  if (ring != nullptr) {
    switch (ReadWithRing(env, fn, ring, fd, buffer, buffer_length, offsets, lengths, max, capacity,
                         static_cast<unsigned>(expected), &count)) {
      case RingOutcome::kDone:
        hint = static_cast<uint16_t>(count < UINT16_MAX ? count : UINT16_MAX);
        return Int(env, static_cast<double>(count));
      case RingOutcome::kThrown:
        return nullptr;
      case RingOutcome::kUseLoop:
        break;
    }
  }
  while (count < max) {
    int64_t offset = 0, span = 0;
    if (!LoadFrame(env, fn, buffer_length, offsets, nullptr, capacity, count, &offset, &span)) return nullptr;
    tls_stats.batchSyscalls += 1;
    const ssize_t n = read(fd, buffer + offset, static_cast<size_t>(span));
    if (n >= 0) {
      lengths[count++] = static_cast<int32_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) break;
    if (count == 0) {
      ThrowFdErrno(env, "read", fd, errno);
      return nullptr;
    }
    break;
  }
  hint = static_cast<uint16_t>(count < UINT16_MAX ? count : UINT16_MAX);
  return Int(env, static_cast<double>(count));
}

// writeBatch(fd, buffer, offsets, lengths, count): number
// Writes frame i with one write (io_uring: all of them in one system call).
// Returns n, the number of frames from the front of
// the batch that are done: frames [0, n) were written, or dropped on an
// error that concerns that frame only (counted in ioStats().txDropped, errno
// in ioStats().lastTxErrno). n < count only when the fd would block
// (EAGAIN): frames [n, count) were not attempted and can be retried later.
// An error that concerns the fd itself (EBADF, ...) throws if no frame was
// done yet, and otherwise ends the batch early (it recurs on the next call).
napi_value WriteBatch(napi_env env, napi_callback_info info) {
  const char* fn = "writeBatch";
  Args args;
  FrameArrays frames;
  int64_t count = 0;
  if (!GetArgs(env, info, fn, 5, &args) || !GetFrameArrays(env, args, fn, 4, "count", &frames, &count) ||
      !CheckFrames(env, fn, frames.buffer_length, frames.offsets, frames.lengths, 0, count)) {
    return nullptr;
  }
  const auto& [fd, buffer, buffer_length, offsets, lengths] = frames;
  int64_t done = 0;
  Ring* ring = count >= kMinRingFrames ? ThreadRing() : nullptr;
  if (ring != nullptr) {
    switch (WriteWithRing(env, fn, ring, fd, buffer, buffer_length, offsets, lengths, count, &done)) {
      case RingOutcome::kDone:
        return Int(env, static_cast<double>(done));
      case RingOutcome::kThrown:
        return nullptr;
      case RingOutcome::kUseLoop:
        break;
    }
  }
  while (done < count) {
    int64_t offset = 0, span = 0;
    if (!LoadFrame(env, fn, buffer_length, offsets, lengths, 0, done, &offset, &span)) return nullptr;
    tls_stats.batchSyscalls += 1;
    if (write(fd, buffer + offset, static_cast<size_t>(span)) >= 0) {
      done++;
      continue;
    }
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN) break;
    if (IsFdError(err)) {
      if (done == 0) {
        ThrowFdErrno(env, "write", fd, err);
        return nullptr;
      }
      break;
    }
    CountTxDrop(err);
    done++;
  }
  return Int(env, static_cast<double>(done));
}

// ---------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------

bool ParseIpv4(napi_env env, napi_value value, const char* fn, struct in_addr* out) {
  char text[64] = {0};
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, text, sizeof text, &length) != napi_ok) {
    ThrowType(env, fn, "bindIp must be a string");
    return false;
  }
  if (inet_pton(AF_INET, text, out) != 1) {
    char message[128];
    snprintf(message, sizeof message, "%s: not an IPv4 address: '%s'", fn, text);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", message);
    return false;
  }
  return true;
}

// udpOpen(bindIp, port): number
// A non-blocking UDP socket bound to bindIp:port (port 0: the kernel picks;
// see localPort), SO_REUSEADDR so a restarted vrouter rebinds at once, and
// 4 MiB socket buffers.
napi_value UdpOpen(napi_env env, napi_callback_info info) {
  const char* fn = "udpOpen";
  Args args;
  struct in_addr ip;
  int64_t port = 0;
  if (!GetArgs(env, info, fn, 2, &args) || !ParseIpv4(env, args.v[0], fn, &ip) ||
      !GetInteger(env, args.v[1], fn, "port", 0, 65535, &port)) {
    return nullptr;
  }
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, "socket", "(SOCK_DGRAM)", errno);
    return nullptr;
  }
  const int on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) {
    const int err = errno;
    CloseQuietly(fd);
    ThrowFdErrno(env, "setsockopt(SO_REUSEADDR)", fd, err);
    return nullptr;
  }
  SetSocketBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF);
  SetSocketBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF);
  struct sockaddr_in address;
  memset(&address, 0, sizeof address);
  address.sin_family = AF_INET;
  address.sin_addr = ip;
  address.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&address), sizeof address) != 0) {
    const int err = errno;
    CloseQuietly(fd);
    char what[48], ip_text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &ip, ip_text, sizeof ip_text);
    snprintf(what, sizeof what, "%s:%lld", ip_text, static_cast<long long>(port));
    ThrowErrno(env, "bind", what, err);
    return nullptr;
  }
  return Int(env, fd);
}

// localPort(fd): number. The bound port of a socket (after udpOpen(ip, 0)).
napi_value LocalPort(napi_env env, napi_callback_info info) {
  const char* fn = "localPort";
  Args args;
  int fd = 0;
  if (!GetArgs(env, info, fn, 1, &args) || !GetFd(env, args.v[0], fn, "fd", &fd)) return nullptr;
  struct sockaddr_in address;
  socklen_t length = sizeof address;
  memset(&address, 0, sizeof address);
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&address), &length) != 0) {
    ThrowFdErrno(env, "getsockname", fd, errno);
    return nullptr;
  }
  if (address.sin_family != AF_INET) {
    ThrowFdErrno(env, "getsockname", fd, EAFNOSUPPORT);
    return nullptr;
  }
  return Int(env, ntohs(address.sin_port));
}

// rawOpen(protocol): number
// A SOCK_RAW socket that receives every IPv4 packet of `protocol` addressed
// to this host (e.g. 47, GRE), each with its full IPv4 header. Needs
// CAP_NET_RAW. Not for sending: use rawSendOpen.
napi_value RawOpen(napi_env env, napi_callback_info info) {
  const char* fn = "rawOpen";
  Args args;
  int64_t protocol = 0;
  if (!GetArgs(env, info, fn, 1, &args) || !GetInteger(env, args.v[0], fn, "protocol", 0, 255, &protocol)) {
    return nullptr;
  }
  const int fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, static_cast<int>(protocol));
  if (fd < 0) {
    char what[48];
    snprintf(what, sizeof what, "(SOCK_RAW, protocol %lld)", static_cast<long long>(protocol));
    ThrowErrno(env, "socket", what, errno);
    return nullptr;
  }
  SetSocketBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF);
  return Int(env, fd);
}

// rawSendOpen(): number
// A SOCK_RAW IPPROTO_RAW socket, send only, IP_HDRINCL implied: each frame
// given to sendBatch is a complete IPv4 packet we built ourselves (own UDP
// source ports for MPLSoUDP entropy, own GRE headers). The kernel still
// fills in the IPv4 checksum and total length, the id if it is 0 and the
// source if it is 0.0.0.0; it routes on the sendBatch destination.
napi_value RawSendOpen(napi_env env, napi_callback_info /*info*/) {
  const int fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
  if (fd < 0) {
    ThrowErrno(env, "socket", "(SOCK_RAW, IPPROTO_RAW)", errno);
    return nullptr;
  }
  SetSocketBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF);
  return Int(env, fd);
}

// recvBatch(fd, buffer, offsets, lengths, sources: Uint32Array, max, capacity): number
// recvmmsg(2) up to `max` datagrams, datagram i into
// buffer[offsets[i] .. offsets[i] + capacity), its length in lengths[i] and
// its source IPv4 address, host order, in sources[i]. Returns the count,
// 0 when nothing is queued. A datagram longer than capacity is cut to
// capacity and counted in ioStats().rxTruncated. Errors as readBatch.
napi_value RecvBatch(napi_env env, napi_callback_info info) {
  const char* fn = "recvBatch";
  Args args;
  FrameArrays frames;
  uint32_t* sources = nullptr;
  size_t sources_length = 0;
  int64_t max = 0, capacity = 0;
  if (!GetArgs(env, info, fn, 7, &args) || !GetFrameArrays(env, args, fn, 5, "max", &frames, &max) ||
      !GetTyped(env, args.v[4], napi_uint32_array, fn, "sources", "Uint32Array", &sources, &sources_length) ||
      !GetInteger(env, args.v[6], fn, "capacity", 1, INT32_MAX, &capacity) ||
      !CheckCount(env, fn, "max", max, sources_length, "sources") ||
      !CheckFrames(env, fn, frames.buffer_length, frames.offsets, nullptr, capacity, max)) {
    return nullptr;
  }
  const auto& [fd, buffer, buffer_length, offsets, lengths] = frames;
  struct mmsghdr messages[kChunk];
  struct iovec vectors[kChunk];
  struct sockaddr_in names[kChunk];
  int64_t count = 0;
  while (count < max) {
    const int chunk = max - count < kChunk ? static_cast<int>(max - count) : kChunk;
    for (int j = 0; j < chunk; j++) {
      int64_t offset = 0, span = 0;
      if (!LoadFrame(env, fn, buffer_length, offsets, nullptr, capacity, count + j, &offset, &span)) return nullptr;
      vectors[j].iov_base = buffer + offset;
      vectors[j].iov_len = static_cast<size_t>(span);
      memset(&messages[j].msg_hdr, 0, sizeof messages[j].msg_hdr);
      messages[j].msg_hdr.msg_name = &names[j];
      messages[j].msg_hdr.msg_namelen = sizeof names[j];
      messages[j].msg_hdr.msg_iov = &vectors[j];
      messages[j].msg_hdr.msg_iovlen = 1;
      messages[j].msg_len = 0;
    }
    // MSG_DONTWAIT: never block, even on an fd someone made blocking.
    const int n = recvmmsg(fd, messages, static_cast<unsigned>(chunk), MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      if (count == 0) {
        ThrowFdErrno(env, "recvmmsg", fd, errno);
        return nullptr;
      }
      break;
    }
    for (int j = 0; j < n; j++) {
      lengths[count + j] = static_cast<int32_t>(messages[j].msg_len);
      const bool is_ipv4 =
          messages[j].msg_hdr.msg_namelen >= sizeof(struct sockaddr_in) && names[j].sin_family == AF_INET;
      sources[count + j] = is_ipv4 ? ntohl(names[j].sin_addr.s_addr) : 0;
      if (messages[j].msg_hdr.msg_flags & MSG_TRUNC) tls_stats.rxTruncated += 1;
    }
    count += n;
    if (n < chunk) break;  // the queue is empty: don't pay for an EAGAIN call
  }
  return Int(env, static_cast<double>(count));
}

// sendBatch(fd, buffer, offsets, lengths, destinations: Uint32Array,
//           ports: Uint16Array | null, count): number
// sendmmsg(2) frame i to destinations[i] (IPv4, host order), UDP port
// ports[i] (null: port 0, as raw sockets want). Returns frames done, with
// the same meaning as writeBatch: sent or dropped-and-counted; fewer than
// count only when the socket buffer is full (EAGAIN).
napi_value SendBatch(napi_env env, napi_callback_info info) {
  const char* fn = "sendBatch";
  Args args;
  FrameArrays frames;
  uint32_t* destinations = nullptr;
  uint16_t* ports = nullptr;
  size_t destinations_length = 0, ports_length = 0;
  int64_t count = 0;
  if (!GetArgs(env, info, fn, 7, &args) || !GetFrameArrays(env, args, fn, 6, "count", &frames, &count) ||
      !GetTyped(env, args.v[4], napi_uint32_array, fn, "destinations", "Uint32Array", &destinations,
                &destinations_length) ||
      !GetTyped(env, args.v[5], napi_uint16_array, fn, "ports", "Uint16Array", &ports, &ports_length, true) ||
      !CheckCount(env, fn, "count", count, destinations_length, "destinations") ||
      (ports != nullptr && !CheckCount(env, fn, "count", count, ports_length, "ports")) ||
      !CheckFrames(env, fn, frames.buffer_length, frames.offsets, frames.lengths, 0, count)) {
    return nullptr;
  }
  const auto& [fd, buffer, buffer_length, offsets, lengths] = frames;
  struct mmsghdr messages[kChunk];
  struct iovec vectors[kChunk];
  struct sockaddr_in names[kChunk];
  int64_t done = 0;
  bool blocked = false;
  while (done < count && !blocked) {
    const int64_t base = done;
    const int chunk = count - base < kChunk ? static_cast<int>(count - base) : kChunk;
    for (int j = 0; j < chunk; j++) {
      const int64_t i = base + j;
      int64_t offset = 0, span = 0;
      if (!LoadFrame(env, fn, buffer_length, offsets, lengths, 0, i, &offset, &span)) return nullptr;
      memset(&names[j], 0, sizeof names[j]);
      names[j].sin_family = AF_INET;
      names[j].sin_addr.s_addr = htonl(destinations[i]);
      names[j].sin_port = htons(ports != nullptr ? ports[i] : 0);
      vectors[j].iov_base = buffer + offset;
      vectors[j].iov_len = static_cast<size_t>(span);
      memset(&messages[j].msg_hdr, 0, sizeof messages[j].msg_hdr);
      messages[j].msg_hdr.msg_name = &names[j];
      messages[j].msg_hdr.msg_namelen = sizeof names[j];
      messages[j].msg_hdr.msg_iov = &vectors[j];
      messages[j].msg_hdr.msg_iovlen = 1;
    }
    // sendmmsg stops at the first message that fails: it returns the number
    // sent before it, or -1 with its errno when it is the first one. So the
    // loop resends from the failed message, and a -1 always concerns
    // message `done`.
    int j = 0;
    while (j < chunk) {
      const int n = sendmmsg(fd, messages + j, static_cast<unsigned>(chunk - j), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        j += n;
        done += n;
        continue;
      }
      const int err = n < 0 ? errno : EAGAIN;  // 0 sent without an error: treat as full
      if (err == EINTR) continue;
      if (err == EAGAIN) {
        blocked = true;
        break;
      }
      if (IsFdError(err)) {
        if (done == 0) {
          ThrowFdErrno(env, "sendmmsg", fd, err);
          return nullptr;
        }
        blocked = true;
        break;
      }
      CountTxDrop(err);
      j++;
      done++;
    }
  }
  return Int(env, static_cast<double>(done));
}

// ioStats(): { txDropped, lastTxErrno, rxTruncated, batchSyscalls, ioUring },
// cumulative counters of the calling thread (each worker has its own), and
// whether its readBatch/writeBatch use io_uring (which sets the ring up if
// no batch call has yet).
napi_value IoStats(napi_env env, napi_callback_info /*info*/) {
  napi_value result = nullptr, uring = nullptr;
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "txDropped", Int(env, tls_stats.txDropped));
  napi_set_named_property(env, result, "lastTxErrno", Int(env, tls_stats.lastTxErrno));
  napi_set_named_property(env, result, "rxTruncated", Int(env, tls_stats.rxTruncated));
  napi_set_named_property(env, result, "batchSyscalls", Int(env, tls_stats.batchSyscalls));
  napi_get_boolean(env, ThreadRing() != nullptr, &uring);
  napi_set_named_property(env, result, "ioUring", uring);
  return result;
}

}  // namespace

NAPI_MODULE_INIT() {
  const napi_property_descriptor functions[] = {
      {"tapOpen", nullptr, TapOpen, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"podTapOpen", nullptr, PodTapOpen, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"close", nullptr, Close, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"epollCreate", nullptr, EpollCreate, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"epollAdd", nullptr, EpollAdd, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"epollDel", nullptr, EpollDel, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"epollWait", nullptr, EpollWait, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"eventfdCreate", nullptr, EventfdCreate, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"eventfdSignal", nullptr, EventfdSignal, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"eventfdDrain", nullptr, EventfdDrain, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"readBatch", nullptr, ReadBatch, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"writeBatch", nullptr, WriteBatch, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"udpOpen", nullptr, UdpOpen, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"localPort", nullptr, LocalPort, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"rawOpen", nullptr, RawOpen, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"rawSendOpen", nullptr, RawSendOpen, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"recvBatch", nullptr, RecvBatch, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"sendBatch", nullptr, SendBatch, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"ioStats", nullptr, IoStats, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  return exports;
}
