// fds.cc: closing fds, epoll and eventfd: how the worker thread waits.
//
// The worker blocks in exactly one place, epollWait, on every port's fd,
// the underlay sockets and an eventfd that the main thread signals when it
// has posted a request; everything else the addon does never blocks.
#include "common.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>

namespace vrio {
namespace {

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

// closeMany(fds: Int32Array): void. Closes them all together (see
// RunInParallel): a daemon's 500 TAPs at exit. Throws the first failure once
// every fd was closed.
napi_value CloseMany(napi_env env, napi_callback_info info) {
  const char* fn = "closeMany";
  Args args;
  std::vector<int> fds;
  if (!GetArgs(env, info, fn, 1, &args) || !GetFdList(env, args.v[0], fn, &fds)) return nullptr;
  std::vector<int> errors(fds.size(), 0);
  RunInParallel(fds.size(), [&](size_t i) {
    if (close(fds[i]) != 0 && errno != EINTR) errors[i] = errno;
  });
  for (size_t i = 0; i < fds.size(); i++) {
    if (errors[i] != 0) {
      ThrowFdErrno(env, "close", fds[i], errors[i]);
      return nullptr;
    }
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

}  // namespace

void RegisterFds(napi_env env, napi_value exports) {
  static const Export functions[] = {
      {"close", Close},
      {"closeMany", CloseMany},
      {"epollCreate", EpollCreate},
      {"epollAdd", EpollAdd},
      {"epollDel", EpollDel},
      {"epollWait", EpollWait},
      {"eventfdCreate", EventfdCreate},
      {"eventfdSignal", EventfdSignal},
      {"eventfdDrain", EventfdDrain},
  };
  DefineFunctions(env, exports, functions);
}

}  // namespace vrio
