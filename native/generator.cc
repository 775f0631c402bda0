// generator.cc: the traffic generator of bench:pps (bench/pps/generator.ts),
// for benchmarks only; the vrouter never calls it.
//
// Why not trafgen: on kernel 6.18, with RPS on the path, the veth refuses
// frames once the remote CPU's backlog is full and trafgen gives up with
// EAGAIN. This sender takes a refusal as back-pressure: it counts it and
// offers the same frames again, so every path, RPS or not, is measured with
// one generator.
//
// Two sockets, one send loop:
//  - generatorPacketOpen: an AF_PACKET socket bound to the pod's interface,
//    PACKET_QDISC_BYPASS on (as trafgen by default): whole Ethernet frames
//    straight to the device.
//  - generatorUdpOpen: a UDP socket bound and connected, the "real socket
//    sender": the pod's own stack builds the headers, routes and resolves.
//  generatorRun cycles through a list of frames (or UDP payloads) with
//  sendmmsg(2), 64 per call, optionally paced to a rate, until its time is
//  up or SIGINT/SIGTERM arrives.
//
// Unlike the rest of the addon, generatorRun blocks its caller for the whole
// run: it is meant for a process of its own (bench/pps/generator.ts).
#include "common.h"

#include <linux/if_packet.h>
#include <poll.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <vector>

namespace vrio {
namespace {

// Messages per sendmmsg: trafgen's TX ring flushes about as many per kick.
constexpr int kGeneratorBatch = 64;
// Pacing sleeps only when the next frame is due further away than this; closer
// deadlines are waited for by spinning, as sleeps overshoot by tens of us.
constexpr int64_t kMinSleepNs = 100 * 1000;
constexpr int64_t kMaxSleepNs = 10 * 1000 * 1000;

// After a device refused a frame (ENOBUFS: with RPS, the remote CPU's backlog
// is full), the pause before offering it again. Retrying at once keeps that
// backlog full, and the path's later hops, queued on the same backlog, then
// lose what the first hop let through.
constexpr long kRefusedPauseNs = 20 * 1000;

volatile sig_atomic_t g_stop_requested = 0;

void RequestStop(int /*signal*/) { g_stop_requested = 1; }

int64_t NowNs() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

// generatorPacketOpen(ifname) -> fd: AF_PACKET raw socket bound to the
// interface, protocol 0 (it receives nothing), qdisc bypassed.
napi_value GeneratorPacketOpen(napi_env env, napi_callback_info info) {
  static const char* fn = "generatorPacketOpen";
  Args args;
  char ifname[IF_NAMESIZE] = {0};
  if (!GetArgs(env, info, fn, 1, &args) || !GetShortString(env, args.v[0], fn, "ifname", ifname, IF_NAMESIZE - 1)) {
    return nullptr;
  }
  const unsigned ifindex = if_nametoindex(ifname);
  if (ifindex == 0) {
    ThrowErrno(env, "if_nametoindex", ifname, errno);
    return nullptr;
  }
  const int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, "socket", "AF_PACKET", errno);
    return nullptr;
  }
  struct sockaddr_ll address = {};
  address.sll_family = AF_PACKET;
  address.sll_ifindex = static_cast<int>(ifindex);
  const int on = 1;
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&address), sizeof address) != 0 ||
      setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &on, sizeof on) != 0) {
    const int err = errno;
    CloseQuietly(fd);
    ThrowErrno(env, "bind", ifname, err);
    return nullptr;
  }
  SetSocketBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF);
  return Int(env, fd);
}

// generatorUdpOpen(srcIp, srcPort, dstIp, dstPort) -> fd: a UDP socket bound
// to srcIp:srcPort and connected to dstIp:dstPort.
napi_value GeneratorUdpOpen(napi_env env, napi_callback_info info) {
  static const char* fn = "generatorUdpOpen";
  Args args;
  struct sockaddr_in source = {}, destination = {};
  int64_t source_port = 0, destination_port = 0;
  if (!GetArgs(env, info, fn, 4, &args) || !ParseIpv4(env, args.v[0], fn, &source.sin_addr) ||
      !GetInteger(env, args.v[1], fn, "srcPort", 0, 65535, &source_port) ||
      !ParseIpv4(env, args.v[2], fn, &destination.sin_addr) ||
      !GetInteger(env, args.v[3], fn, "dstPort", 1, 65535, &destination_port)) {
    return nullptr;
  }
  source.sin_family = destination.sin_family = AF_INET;
  source.sin_port = htons(static_cast<uint16_t>(source_port));
  destination.sin_port = htons(static_cast<uint16_t>(destination_port));
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, "socket", "AF_INET/UDP", errno);
    return nullptr;
  }
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&source), sizeof source) != 0) {
    const int err = errno;
    CloseQuietly(fd);
    ThrowErrno(env, "bind", "UDP", err);
    return nullptr;
  }
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&destination), sizeof destination) != 0) {
    const int err = errno;
    CloseQuietly(fd);
    ThrowErrno(env, "connect", "UDP", err);
    return nullptr;
  }
  SetSocketBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF);
  return Int(env, fd);
}

// generatorRun(fd, buffer, offsets, lengths, count, ratePps, maxSeconds) ->
// { sent, refused, sendCalls, seconds }. Sends frames 0..count-1 over and
// over, ratePps per second (0: as fast as the path takes them), for at most
// maxSeconds or until SIGINT/SIGTERM. sent counts the frames the kernel
// accepted; refused, the sendmmsg calls that failed with EAGAIN or ENOBUFS
// (full socket buffer, or a device that refused the frame), after which the
// same frames are offered again. Any other error throws.
napi_value GeneratorRun(napi_env env, napi_callback_info info) {
  static const char* fn = "generatorRun";
  Args args;
  FrameArrays frames;
  int64_t count = 0, rate = 0, max_seconds = 0;
  if (!GetArgs(env, info, fn, 7, &args) || !GetFrameArrays(env, args, fn, 4, "count", &frames, &count) ||
      !GetInteger(env, args.v[5], fn, "ratePps", 0, 1e9, &rate) ||
      !GetInteger(env, args.v[6], fn, "maxSeconds", 1, 86400, &max_seconds) ||
      !CheckFrames(env, fn, frames.buffer_length, frames.offsets, frames.lengths, 0, count)) {
    return nullptr;
  }
  if (count == 0) {
    ThrowRange(env, "generatorRun: count must be at least 1");
    return nullptr;
  }
  // Messages for frames 0..count-1 and then the first kGeneratorBatch again,
  // so that a batch starting anywhere in the list is one contiguous slice.
  const size_t messages = static_cast<size_t>(count) + kGeneratorBatch;
  std::vector<struct iovec> iovecs(messages);
  std::vector<struct mmsghdr> headers(messages);
  for (size_t i = 0; i < messages; i++) {
    const size_t frame = i % static_cast<size_t>(count);
    iovecs[i].iov_base = frames.buffer + frames.offsets[frame];
    iovecs[i].iov_len = static_cast<size_t>(frames.lengths[frame]);
    headers[i] = {};
    headers[i].msg_hdr.msg_iov = &iovecs[i];
    headers[i].msg_hdr.msg_iovlen = 1;
  }

  struct sigaction stop = {}, old_int = {}, old_term = {};
  stop.sa_handler = RequestStop;
  sigemptyset(&stop.sa_mask);
  g_stop_requested = 0;
  sigaction(SIGINT, &stop, &old_int);
  sigaction(SIGTERM, &stop, &old_term);

  double sent = 0, refused = 0, send_calls = 0;
  int failure = 0;
  size_t next = 0;
  const int64_t started = NowNs();
  const int64_t deadline = started + max_seconds * 1000000000;
  for (int64_t now = started; !g_stop_requested && now < deadline; now = NowNs()) {
    int batch = kGeneratorBatch;
    if (rate > 0) {
      // Frames due by now, from the start: pacing never bursts to catch up by more than one batch.
      const double due = static_cast<double>(now - started) * static_cast<double>(rate) / 1e9 - sent;
      if (due < 1) {
        const int64_t wait = static_cast<int64_t>((1 - due) * 1e9 / static_cast<double>(rate));
        if (wait > kMinSleepNs) {
          // At most kMaxSleepNs at a time, so that a stop request is seen soon at any rate.
          const struct timespec pause = {0, static_cast<long>(std::min(wait - kMinSleepNs / 2, kMaxSleepNs))};
          nanosleep(&pause, nullptr);
        }
        continue;
      }
      if (due < batch) batch = static_cast<int>(due);
    }
    send_calls += 1;
    const int done = sendmmsg(frames.fd, &headers[next], static_cast<unsigned>(batch), 0);
    if (done > 0) {
      sent += done;
      next = (next + static_cast<size_t>(done)) % static_cast<size_t>(count);
      continue;
    }
    if (done < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
      refused += 1;
      // A full socket buffer clears as the device takes frames; a refusing device, as its peer's CPU catches up.
      if (errno == ENOBUFS) {
        const struct timespec pause = {0, kRefusedPauseNs};
        nanosleep(&pause, nullptr);
      } else {
        struct pollfd writable = {frames.fd, POLLOUT, 0};
        poll(&writable, 1, 1);
      }
      continue;
    }
    if (done < 0 && errno == EINTR) continue;
    failure = done < 0 ? errno : EIO;
    break;
  }
  const double seconds = static_cast<double>(NowNs() - started) / 1e9;
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  if (failure != 0) {
    ThrowFdErrno(env, "sendmmsg", frames.fd, failure);
    return nullptr;
  }
  napi_value result = nullptr;
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "sent", Int(env, sent));
  napi_set_named_property(env, result, "refused", Int(env, refused));
  napi_set_named_property(env, result, "sendCalls", Int(env, send_calls));
  napi_set_named_property(env, result, "seconds", Int(env, seconds));
  return result;
}

}  // namespace

void RegisterGenerator(napi_env env, napi_value exports) {
  static const Export functions[] = {
      {"generatorPacketOpen", GeneratorPacketOpen},
      {"generatorUdpOpen", GeneratorUdpOpen},
      {"generatorRun", GeneratorRun},
  };
  DefineFunctions(env, exports, functions);
}

}  // namespace vrio
