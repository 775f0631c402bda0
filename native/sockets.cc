// sockets.cc: the underlay's sockets (UDP for MPLS over UDP, raw IPv4 for
// GRE and for sending our own outer headers) and their batch I/O with
// recvmmsg(2)/sendmmsg(2): one system call per batch of datagrams.
#include "common.h"

#include <sys/uio.h>

namespace vrio {
namespace {

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

}  // namespace

void RegisterSockets(napi_env env, napi_value exports) {
  static const Export functions[] = {
      {"udpOpen", UdpOpen},
      {"localPort", LocalPort},
      {"rawOpen", RawOpen},
      {"rawSendOpen", RawSendOpen},
      {"recvBatch", RecvBatch},
      {"sendBatch", SendBatch},
  };
  DefineFunctions(env, exports, functions);
}

}  // namespace vrio
