// common.h: what every file of the addon shares: the thread's error
// counters, how errors are thrown to JavaScript (shaped like Node's system
// errors), and how arguments are read and checked before any syscall.
//
// Header-only (inline functions) so that each kernel-interface file is one
// translation unit that includes this and nothing else of ours but the
// interfaces it builds on (netlink.h for rtnetlink).
//
// Conventions, shared by every function of the addon:
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
#pragma once

#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

namespace vrio {

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
  double gsoSends = 0;       // udpSendRuns messages carrying UDP_SEGMENT
  double gsoSegments = 0;    // datagrams those messages carried
  double groBuffers = 0;     // coalesced buffers udpGroReceive received
  double groSegments = 0;    // frames it split them into
};
inline thread_local Stats tls_stats;

// ---------------------------------------------------------------------------
// Throwing errors
// ---------------------------------------------------------------------------

inline const char* ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  return strerrorname_np(err);  // "EBADF"; NULL for unknown numbers
#else
  (void)err;
  return nullptr;
#endif
}

inline void SetProperty(napi_env env, napi_value object, const char* key, napi_value value) {
  if (value != nullptr) napi_set_named_property(env, object, key, value);
}

// Throws Error("<syscall> <what>: <strerror>") with .code/.errno/.syscall,
// the same shape as Node's own system errors.
inline void ThrowErrno(napi_env env, const char* syscall, const char* what, int err) {
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

// An AF_XDP UMEM chunk (xsk.cc) and the longest frame the kernel copies
// into one: the chunk minus XDP_PACKET_HEADROOM. Longer frames are dropped,
// so veth.cc sizes the host end by it and xskOpen refuses a larger MTU.
constexpr uint32_t kXskChunkSize = 2048;
constexpr uint32_t kXskFrameCapacity = kXskChunkSize - XDP_PACKET_HEADROOM;

// The MTU of `name` in this thread's namespace (SIOCGIFMTU), or -errno.
// Ports size their frames by it: a jumbo pod needs bigger ring slots.
inline int DeviceMtu(const char* name) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  struct ifreq request = {};
  snprintf(request.ifr_name, sizeof request.ifr_name, "%s", name);
  const int result = ioctl(fd, SIOCGIFMTU, &request) == 0 ? request.ifr_mtu : -errno;
  close(fd);
  return result;
}

// "fd 5", the object named in most syscall errors.
inline void ThrowFdErrno(napi_env env, const char* syscall, int fd, int err) {
  char what[32];
  snprintf(what, sizeof what, "fd %d", fd);
  ThrowErrno(env, syscall, what, err);
}

inline void ThrowType(napi_env env, const char* fn, const char* what) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", fn, what);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
}

inline void ThrowRange(napi_env env, const char* message) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
}

// ---------------------------------------------------------------------------
// Argument parsing. Each Get* returns false after throwing; the caller then
// returns nullptr to JS.
// ---------------------------------------------------------------------------

constexpr size_t kMaxArgs = 10;

struct Args {
  napi_value v[kMaxArgs];
  size_t count;
};

inline bool GetArgs(napi_env env, napi_callback_info info, const char* fn, size_t want, Args* args) {
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
inline bool GetInteger(napi_env env, napi_value value, const char* fn, const char* name, double min, double max,
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
inline bool GetFd(napi_env env, napi_value value, const char* fn, const char* name, int* fd) {
  int64_t v = 0;
  if (!GetInteger(env, value, fn, name, INT32_MIN, INT32_MAX, &v)) return false;
  *fd = static_cast<int>(v);
  return true;
}

// A typed array of exactly the given element type, e.g. napi_int32_array.
// `nullable` also accepts null/undefined, reported as data == nullptr.
template <typename T>
inline bool GetTyped(napi_env env, napi_value value, napi_typedarray_type want, const char* fn, const char* name,
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

inline bool GetBuffer(napi_env env, napi_value value, const char* fn, uint8_t** data, size_t* length) {
  return GetTyped(env, value, napi_uint8_array, fn, "buffer", "Buffer or Uint8Array", data, length);
}

// Runs job(0) .. job(count - 1) on up to 64 threads of the calling thread's
// namespaces and waits for all. For teardown calls that each wait for an RCU
// grace period (closing a TAP, an AF_XDP or AF_PACKET socket, deleting a
// device: about 16-23 ms apiece here): 500 of them take 8-11 s one after
// another, and overlap when made together.
inline void RunInParallel(size_t count, const std::function<void(size_t)>& job) {
  if (count == 0) return;
  std::atomic<size_t> next{0};
  const auto lane = [&]() {
    for (size_t index = next++; index < count; index = next++) job(index);
  };
  std::vector<std::thread> threads;
  const size_t extra = std::min<size_t>(count, 64) - 1;
  threads.reserve(extra);
  for (size_t i = 0; i < extra; i++) threads.emplace_back(lane);
  lane();
  for (auto& thread : threads) thread.join();
}

// An Int32Array of fds (every one >= 0), as the *CloseMany calls take them.
inline bool GetFdList(napi_env env, napi_value value, const char* fn, std::vector<int>* fds) {
  int32_t* data = nullptr;
  size_t length = 0;
  if (!GetTyped(env, value, napi_int32_array, fn, "fds", "Int32Array", &data, &length)) return false;
  for (size_t i = 0; i < length; i++) {
    if (data[i] < 0) {
      char message[96];
      snprintf(message, sizeof message, "%s: fds[%zu] is %d, not an fd", fn, i, data[i]);
      ThrowRange(env, message);
      return false;
    }
  }
  fds->assign(data, data + length);
  return true;
}

// `count` frames must have entries in every per-frame array.
inline bool CheckCount(napi_env env, const char* fn, const char* name, int64_t count, size_t array_length,
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
inline bool GetFrameArrays(napi_env env, const Args& args, const char* fn, size_t count_index, const char* count_name,
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
inline bool CheckFrames(napi_env env, const char* fn, size_t buffer_length, const int32_t* offsets, const int32_t* spans,
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
inline bool LoadFrame(napi_env env, const char* fn, size_t buffer_length, const int32_t* offsets, const int32_t* spans,
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

inline napi_value Int(napi_env env, double value) {
  napi_value result = nullptr;
  napi_create_double(env, value, &result);
  return result;
}

inline napi_value Undefined(napi_env env) {
  napi_value result = nullptr;
  napi_get_undefined(env, &result);
  return result;
}

// Errors after which no later frame of the batch can succeed: the fd itself
// is wrong. Anything else (EINVAL for a runt frame, EMSGSIZE, EIO on a TAP
// that is down, ENETUNREACH, EPERM from a firewall, ENOBUFS from a full
// queue) concerns one frame, which is dropped and counted.
inline bool IsFdError(int err) {
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

inline void CountTxDrop(int err) {
  tls_stats.txDropped += 1;
  tls_stats.lastTxErrno = err;
}

inline void CloseQuietly(int fd) {
  const int saved = errno;
  close(fd);
  errno = saved;
}

// Best effort: the forced variant (CAP_NET_ADMIN, we usually run as root)
// ignores net.core.[rw]mem_max; without the capability, the plain one gets
// whatever the sysctl allows, which is still a working socket.
inline void SetSocketBuffer(int fd, int forced_option, int plain_option) {
  const int size = kSocketBuffer;
  if (setsockopt(fd, SOL_SOCKET, forced_option, &size, sizeof size) != 0) {
    setsockopt(fd, SOL_SOCKET, plain_option, &size, sizeof size);
  }
}

// Reads a string argument of at most max_length bytes (no NUL inside) into out.
inline bool GetShortString(napi_env env, napi_value value, const char* fn, const char* name, char* out, size_t max_length) {
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

inline bool ParseIpv4(napi_env env, napi_value value, const char* fn, struct in_addr* out) {
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


// One exported function: its JS name and implementation.
struct Export {
  const char* name;
  napi_callback function;
};

template <size_t N>
void DefineFunctions(napi_env env, napi_value exports, const Export (&functions)[N]) {
  napi_property_descriptor descriptors[N];
  for (size_t i = 0; i < N; i++) {
    descriptors[i] = {functions[i].name, nullptr, functions[i].function, nullptr, nullptr, nullptr, napi_enumerable, nullptr};
  }
  napi_define_properties(env, exports, N, descriptors);
}

// Each file adds its functions to the module's exports (addon.cc calls them).
void RegisterFds(napi_env env, napi_value exports);
void RegisterTap(napi_env env, napi_value exports);
void RegisterIoUring(napi_env env, napi_value exports);
void RegisterSockets(napi_env env, napi_value exports);
void RegisterVeth(napi_env env, napi_value exports);
void RegisterXsk(napi_env env, napi_value exports);
void RegisterPacketRing(napi_env env, napi_value exports);
void RegisterGenerator(napi_env env, napi_value exports);

// Whether this thread's readBatch/writeBatch use io_uring (io_uring.cc).
bool ThreadUsesIoUring();

// xskCloseMany and packetRingCloseMany: `fds` must all be objects of this
// thread's table (`find` throws naming the first that is not); each one's
// release (its destructor) then runs in parallel.
template <typename T, typename Find>
napi_value ReleaseTogether(napi_env env, napi_callback_info info, const char* fn,
                           std::unordered_map<int, std::unique_ptr<T>>& table, Find find) {
  Args args;
  std::vector<int> fds;
  if (!GetArgs(env, info, fn, 1, &args) || !GetFdList(env, args.v[0], fn, &fds)) return nullptr;
  for (int fd : fds) {
    if (find(env, fn, fd) == nullptr) return nullptr;
  }
  std::vector<std::unique_ptr<T>> released;
  for (int fd : fds) {
    auto found = table.find(fd);
    if (found == table.end()) continue;  // listed twice
    released.push_back(std::move(found->second));
    table.erase(found);
  }
  RunInParallel(released.size(), [&](size_t i) { released[i].reset(); });
  return Undefined(env);
}

}  // namespace vrio
