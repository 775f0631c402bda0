// sockets.cc: the underlay's sockets (UDP for MPLS over UDP, raw IPv4 for
// GRE and for sending our own outer headers) and their batch I/O with
// recvmmsg(2)/sendmmsg(2): one system call per batch of datagrams; and, for
// MPLS over UDP, sending sockets bound to entropy ports that hand the
// kernel whole runs of datagrams with UDP_SEGMENT (GSO), and receives of
// coalesced runs with UDP_GRO split back into frames.
#include "common.h"

#include <linux/filter.h>
#include <netinet/udp.h>
#include <sys/uio.h>

namespace vrio {
namespace {

// Binds a fresh socket to ip:port and returns its fd, or closes it and
// throws naming the address.
napi_value BindOrClose(napi_env env, int fd, struct in_addr ip, int64_t port) {
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
  return BindOrClose(env, fd, ip, port);
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

// ---------------------------------------------------------------------------
// UDP segmentation offload (GSO) and receive coalescing (GRO) for MPLS over
// UDP. One sendmsg with UDP_SEGMENT hands the kernel a run of equal-size
// datagrams (the last may be shorter) to one peer from one source port; the
// kernel writes every outer IPv4/UDP header and segments as late as it can
// (in the device, or in software just before it). A UDP_GRO socket receives
// such runs still coalesced, with the segment size in a cmsg. Each costs one
// system call and one trip through the stack per run instead of per packet.
// ---------------------------------------------------------------------------

// Segments per UDP_SEGMENT send: the kernel's UDP_MAX_SEGMENTS was 64 before
// 6.9 and 128 since; 64 works on both.
constexpr int kMaxGsoSegments = 64;
// The largest UDP payload one send can carry (65535 - 20 IPv4 - 8 UDP).
constexpr int64_t kMaxUdpPayload = 65507;
// Room for one received coalesced buffer: GRO and GSO both stop at 64 KiB.
constexpr int64_t kGroStageSlot = 65536;
// Iovecs on the stack per sendmmsg (one per segment).
constexpr int kSendIovecs = 1024;

// Every UDP datagram arriving at a sending socket is dropped by this classic
// BPF filter ("ret #0": keep 0 bytes) instead of filling a queue nobody reads.
bool DiscardInput(int fd) {
  static struct sock_filter drop_all[] = {{BPF_RET | BPF_K, 0, 0, 0}};
  struct sock_fprog program = {1, drop_all};
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof program) == 0;
}

// udpSenderOpen(bindIp, port, ttl, tos): number
// A UDP socket that only sends, bound to bindIp:port so that `port` is the
// source port of everything it sends (the RFC 7510 entropy port of a flow):
// the outer fields the raw path writes itself are set on the socket (IP_TTL,
// IP_TOS, DF clear with IP_PMTUDISC_DONT); what arrives is discarded. No
// SO_REUSEADDR: a port some other socket holds (the legacy 51234 receiver,
// another program) fails with EADDRINUSE, and that port stays on the raw path.
napi_value UdpSenderOpen(napi_env env, napi_callback_info info) {
  const char* fn = "udpSenderOpen";
  Args args;
  struct in_addr ip;
  int64_t port = 0, ttl = 0, tos = 0;
  if (!GetArgs(env, info, fn, 4, &args) || !ParseIpv4(env, args.v[0], fn, &ip) ||
      !GetInteger(env, args.v[1], fn, "port", 1, 65535, &port) || !GetInteger(env, args.v[2], fn, "ttl", 1, 255, &ttl) ||
      !GetInteger(env, args.v[3], fn, "tos", 0, 255, &tos)) {
    return nullptr;
  }
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, "socket", "(SOCK_DGRAM)", errno);
    return nullptr;
  }
  const int ttl_value = static_cast<int>(ttl), tos_value = static_cast<int>(tos), pmtu = IP_PMTUDISC_DONT;
  const char* failed = nullptr;
  if (setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl_value, sizeof ttl_value) != 0) {
    failed = "setsockopt(IP_TTL)";
  } else if (setsockopt(fd, IPPROTO_IP, IP_TOS, &tos_value, sizeof tos_value) != 0) {
    failed = "setsockopt(IP_TOS)";
  } else if (setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu) != 0) {
    failed = "setsockopt(IP_MTU_DISCOVER)";
  } else if (!DiscardInput(fd)) {
    failed = "setsockopt(SO_ATTACH_FILTER)";
  }
  if (failed != nullptr) {
    const int err = errno;
    CloseQuietly(fd);
    ThrowFdErrno(env, failed, fd, err);
    return nullptr;
  }
  SetSocketBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF);
  return BindOrClose(env, fd, ip, port);
}

// udpGroEnable(fd): boolean. Asks for coalesced receives (UDP_GRO); false
// where the kernel does not know the option (before 5.0).
napi_value UdpGroEnable(napi_env env, napi_callback_info info) {
  const char* fn = "udpGroEnable";
  Args args;
  int fd = 0;
  if (!GetArgs(env, info, fn, 1, &args) || !GetFd(env, args.v[0], fn, "fd", &fd)) return nullptr;
  const int on = 1;
  bool enabled = true;
  if (setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof on) != 0) {
    if (errno != ENOPROTOOPT) {
      ThrowFdErrno(env, "setsockopt(UDP_GRO)", fd, errno);
      return nullptr;
    }
    enabled = false;
  }
  napi_value result = nullptr;
  napi_get_boolean(env, enabled, &result);
  return result;
}

// udpSendRuns(buffer, offsets, lengths, order: Int32Array, runs: Int32Array,
//             runCount, dstPort): number
// Run r is runs[4r .. 4r+3] = [fd, destination IPv4 (host order, as int32
// bits), first, count]: the UDP payloads of frames order[first ..
// first+count) go in one sendmsg from socket fd to destination:dstPort,
// with UDP_SEGMENT set to the first one's length when there are several.
// The caller keeps every run to equal lengths but a shorter last one, at
// most 64 segments and 65507 bytes. Consecutive runs of one fd share a
// sendmmsg. Returns the runs done (sent, or dropped and counted in
// ioStats().txDropped frame by frame); fewer than runCount only when a
// socket buffer is full (EAGAIN).
napi_value UdpSendRuns(napi_env env, napi_callback_info info) {
  const char* fn = "udpSendRuns";
  Args args;
  uint8_t* buffer = nullptr;
  int32_t *offsets = nullptr, *lengths = nullptr, *order = nullptr, *runs = nullptr;
  size_t buffer_length = 0, offsets_length = 0, lengths_length = 0, order_length = 0, runs_length = 0;
  int64_t run_count = 0, dst_port = 0;
  if (!GetArgs(env, info, fn, 7, &args) || !GetBuffer(env, args.v[0], fn, &buffer, &buffer_length) ||
      !GetTyped(env, args.v[1], napi_int32_array, fn, "offsets", "Int32Array", &offsets, &offsets_length) ||
      !GetTyped(env, args.v[2], napi_int32_array, fn, "lengths", "Int32Array", &lengths, &lengths_length) ||
      !GetTyped(env, args.v[3], napi_int32_array, fn, "order", "Int32Array", &order, &order_length) ||
      !GetTyped(env, args.v[4], napi_int32_array, fn, "runs", "Int32Array", &runs, &runs_length) ||
      !GetInteger(env, args.v[5], fn, "runCount", 0, INT32_MAX, &run_count) ||
      !GetInteger(env, args.v[6], fn, "dstPort", 1, 65535, &dst_port) ||
      !CheckCount(env, fn, "runCount * 4", run_count * 4, runs_length, "runs")) {
    return nullptr;
  }
  const size_t frames_length = offsets_length < lengths_length ? offsets_length : lengths_length;
  // Every run and every frame is checked before the first system call.
  for (int64_t r = 0; r < run_count; r++) {
    const int64_t first = runs[4 * r + 2], count = runs[4 * r + 3];
    if (first < 0 || count < 1 || count > kMaxGsoSegments || first + count > static_cast<int64_t>(order_length)) {
      char message[160];
      snprintf(message, sizeof message, "%s: run %lld (first %lld, count %lld) is not 1..%d entries of order", fn,
               static_cast<long long>(r), static_cast<long long>(first), static_cast<long long>(count), kMaxGsoSegments);
      ThrowRange(env, message);
      return nullptr;
    }
    int64_t bytes = 0;
    for (int64_t k = first; k < first + count; k++) {
      const int64_t frame = order[k];
      if (frame < 0 || frame >= static_cast<int64_t>(frames_length)) {
        char message[128];
        snprintf(message, sizeof message, "%s: order[%lld] = %lld is not a frame", fn, static_cast<long long>(k),
                 static_cast<long long>(frame));
        ThrowRange(env, message);
        return nullptr;
      }
      if (!CheckFrames(env, fn, buffer_length, offsets + frame, lengths + frame, 0, 1)) return nullptr;
      bytes += lengths[frame];
    }
    if (bytes > kMaxUdpPayload) {
      char message[128];
      snprintf(message, sizeof message, "%s: run %lld carries %lld bytes, more than one datagram's %lld", fn,
               static_cast<long long>(r), static_cast<long long>(bytes), static_cast<long long>(kMaxUdpPayload));
      ThrowRange(env, message);
      return nullptr;
    }
  }
  union Control {
    char bytes[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  };
  struct mmsghdr messages[kChunk];
  struct sockaddr_in names[kChunk];
  Control controls[kChunk];
  struct iovec vectors[kSendIovecs];
  int64_t done = 0;
  while (done < run_count) {
    // A chunk: consecutive runs of one fd, as many as the arrays hold.
    const int fd = runs[4 * done];
    int chunk = 0, used = 0;
    while (done + chunk < run_count && chunk < kChunk && runs[4 * (done + chunk)] == fd) {
      const int32_t* run = runs + 4 * (done + chunk);
      const int count = run[3];
      if (used + count > kSendIovecs) break;
      for (int k = 0; k < count; k++) {
        const int frame = order[run[2] + k];
        int64_t offset = 0, span = 0;
        if (!LoadFrame(env, fn, buffer_length, offsets, lengths, 0, frame, &offset, &span)) return nullptr;
        vectors[used + k].iov_base = buffer + offset;
        vectors[used + k].iov_len = static_cast<size_t>(span);
      }
      struct msghdr* header = &messages[chunk].msg_hdr;
      memset(header, 0, sizeof *header);
      memset(&names[chunk], 0, sizeof names[chunk]);
      names[chunk].sin_family = AF_INET;
      names[chunk].sin_addr.s_addr = htonl(static_cast<uint32_t>(run[1]));
      names[chunk].sin_port = htons(static_cast<uint16_t>(dst_port));
      header->msg_name = &names[chunk];
      header->msg_namelen = sizeof names[chunk];
      header->msg_iov = &vectors[used];
      header->msg_iovlen = static_cast<size_t>(count);
      if (count > 1) {
        memset(&controls[chunk], 0, sizeof controls[chunk]);
        header->msg_control = controls[chunk].bytes;
        header->msg_controllen = sizeof controls[chunk].bytes;
        struct cmsghdr* cmsg = CMSG_FIRSTHDR(header);
        cmsg->cmsg_level = SOL_UDP;
        cmsg->cmsg_type = UDP_SEGMENT;
        cmsg->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        const uint16_t segment = static_cast<uint16_t>(vectors[used].iov_len);
        memcpy(CMSG_DATA(cmsg), &segment, sizeof segment);
      }
      used += count;
      chunk++;
    }
    // As in sendBatch: sendmmsg stops at the first message that fails, so
    // a -1 always concerns message j, which is dropped (or ends the call).
    int j = 0;
    bool blocked = false;
    while (j < chunk) {
      const int n = sendmmsg(fd, messages + j, static_cast<unsigned>(chunk - j), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        for (int k = j; k < j + n; k++) {
          if (messages[k].msg_hdr.msg_iovlen > 1) {
            tls_stats.gsoSends += 1;
            tls_stats.gsoSegments += static_cast<double>(messages[k].msg_hdr.msg_iovlen);
          }
        }
        j += n;
        done += n;
        continue;
      }
      const int err = n < 0 ? errno : EAGAIN;
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
      const size_t segments = messages[j].msg_hdr.msg_iovlen;
      for (size_t k = 0; k < segments; k++) CountTxDrop(err);
      j++;
      done++;
    }
    if (blocked) break;
  }
  return Int(env, static_cast<double>(done));
}

// udpGroReceive(fd, stage, state: Int32Array, buffer, offsets, lengths,
//               sources: Uint32Array, max, capacity): number
// recvBatch for a UDP_GRO socket. Datagrams are received, with recvmmsg,
// into `stage` (M = stage.length / 65536 slots of 64 KiB, at most 256),
// then split into frames as recvBatch returns them: a coalesced buffer
// gives one frame per segment (the cmsg's size; the last may be shorter).
// What does not fit in `max` stays staged for the next call: `state`
// (3 + 3M int32, zeroed at first) is [staged, next, offset, then per
// slot: length, segment size (0: not coalesced), source]. A state that
// does not describe the stage (changed by the caller) is taken as empty.
napi_value UdpGroReceive(napi_env env, napi_callback_info info) {
  const char* fn = "udpGroReceive";
  Args args;
  int fd = 0;
  uint8_t *stage = nullptr, *buffer = nullptr;
  int32_t *state = nullptr, *offsets = nullptr, *lengths = nullptr;
  uint32_t* sources = nullptr;
  size_t stage_length = 0, state_length = 0, buffer_length = 0, offsets_length = 0, lengths_length = 0, sources_length = 0;
  int64_t max = 0, capacity = 0;
  if (!GetArgs(env, info, fn, 9, &args) || !GetFd(env, args.v[0], fn, "fd", &fd) ||
      !GetTyped(env, args.v[1], napi_uint8_array, fn, "stage", "Uint8Array", &stage, &stage_length) ||
      !GetTyped(env, args.v[2], napi_int32_array, fn, "state", "Int32Array", &state, &state_length) ||
      !GetBuffer(env, args.v[3], fn, &buffer, &buffer_length) ||
      !GetTyped(env, args.v[4], napi_int32_array, fn, "offsets", "Int32Array", &offsets, &offsets_length) ||
      !GetTyped(env, args.v[5], napi_int32_array, fn, "lengths", "Int32Array", &lengths, &lengths_length) ||
      !GetTyped(env, args.v[6], napi_uint32_array, fn, "sources", "Uint32Array", &sources, &sources_length) ||
      !GetInteger(env, args.v[7], fn, "max", 0, INT32_MAX, &max) ||
      !GetInteger(env, args.v[8], fn, "capacity", 1, INT32_MAX, &capacity) ||
      !CheckCount(env, fn, "max", max, offsets_length, "offsets") ||
      !CheckCount(env, fn, "max", max, lengths_length, "lengths") ||
      !CheckCount(env, fn, "max", max, sources_length, "sources") ||
      !CheckFrames(env, fn, buffer_length, offsets, nullptr, capacity, max)) {
    return nullptr;
  }
  int64_t slots = static_cast<int64_t>(stage_length) / kGroStageSlot;
  if (slots > kChunk) slots = kChunk;
  if (slots < 1 || static_cast<int64_t>(state_length) < 3 + 3 * slots) {
    char message[160];
    snprintf(message, sizeof message, "%s: stage needs at least one 64 KiB slot and state 3 + 3 int32 per slot (%zu, %zu)",
             fn, stage_length, state_length);
    ThrowRange(env, message);
    return nullptr;
  }
  int32_t* slot_info = state + 3;
  bool valid = state[0] >= 0 && state[0] <= slots && state[1] >= 0 && state[1] <= state[0];
  for (int32_t s = state[1]; valid && s < state[0]; s++) {
    valid = slot_info[3 * s] >= 0 && slot_info[3 * s] <= kGroStageSlot && slot_info[3 * s + 1] >= 0;
  }
  if (!valid || state[2] < 0 || (state[1] < state[0] && state[2] >= slot_info[3 * state[1]])) {
    state[0] = state[1] = state[2] = 0;
  }
  struct mmsghdr messages[kChunk];
  struct iovec vectors[kChunk];
  struct sockaddr_in names[kChunk];
  union Control {
    char bytes[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  };
  Control controls[kChunk];
  int64_t count = 0;
  bool queue_empty = false;
  for (;;) {
    // Hand out what is staged.
    while (count < max && state[1] < state[0]) {
      const int32_t s = state[1];
      const int64_t length = slot_info[3 * s];
      const int64_t segment = slot_info[3 * s + 1] > 0 ? slot_info[3 * s + 1] : length;
      const int64_t at = state[2];
      int64_t piece = length - at < segment ? length - at : segment;
      if (piece > capacity) {
        tls_stats.rxTruncated += 1;
        piece = capacity;
      }
      const int64_t offset = __atomic_load_n(&offsets[count], __ATOMIC_RELAXED);
      if (offset < 0 || offset + capacity > static_cast<int64_t>(buffer_length)) {
        ThrowRange(env, "udpGroReceive: a frame was changed to lie outside the buffer during the call");
        return nullptr;
      }
      memcpy(buffer + offset, stage + s * kGroStageSlot + at, static_cast<size_t>(piece));
      lengths[count] = static_cast<int32_t>(piece);
      sources[count] = static_cast<uint32_t>(slot_info[3 * s + 2]);
      count++;
      if (slot_info[3 * s + 1] > 0) tls_stats.groSegments += 1;
      const int64_t next = at + (length - at < segment ? length - at : segment);
      if (next >= length) {
        state[1] = s + 1;
        state[2] = 0;
      } else {
        state[2] = static_cast<int32_t>(next);
      }
    }
    if (count >= max || queue_empty) break;
    // The stage is empty: fill it.
    state[0] = state[1] = state[2] = 0;
    const int chunk = static_cast<int>(slots);
    for (int j = 0; j < chunk; j++) {
      vectors[j].iov_base = stage + j * kGroStageSlot;
      vectors[j].iov_len = static_cast<size_t>(kGroStageSlot);
      memset(&messages[j].msg_hdr, 0, sizeof messages[j].msg_hdr);
      messages[j].msg_hdr.msg_name = &names[j];
      messages[j].msg_hdr.msg_namelen = sizeof names[j];
      messages[j].msg_hdr.msg_iov = &vectors[j];
      messages[j].msg_hdr.msg_iovlen = 1;
      messages[j].msg_hdr.msg_control = controls[j].bytes;
      messages[j].msg_hdr.msg_controllen = sizeof controls[j].bytes;
      messages[j].msg_len = 0;
    }
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
    if (n == 0) break;
    for (int j = 0; j < n; j++) {
      const struct msghdr* header = &messages[j].msg_hdr;
      int segment = 0;
      for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(header); cmsg != nullptr; cmsg = CMSG_NXTHDR(const_cast<struct msghdr*>(header), cmsg)) {
        if (cmsg->cmsg_level == SOL_UDP && cmsg->cmsg_type == UDP_GRO && cmsg->cmsg_len >= CMSG_LEN(sizeof(int))) {
          memcpy(&segment, CMSG_DATA(cmsg), sizeof segment);
        }
      }
      if (header->msg_flags & MSG_TRUNC) tls_stats.rxTruncated += 1;
      const bool is_ipv4 = header->msg_namelen >= sizeof(struct sockaddr_in) && names[j].sin_family == AF_INET;
      const int32_t length = static_cast<int32_t>(messages[j].msg_len);
      slot_info[3 * j] = length;
      // A zero-length datagram is one empty frame, as recvBatch gives it.
      slot_info[3 * j + 1] = segment > 0 && segment < length ? segment : 0;
      slot_info[3 * j + 2] = static_cast<int32_t>(is_ipv4 ? ntohl(names[j].sin_addr.s_addr) : 0);
      if (slot_info[3 * j + 1] > 0) tls_stats.groBuffers += 1;
    }
    state[0] = n;
    if (n < chunk) queue_empty = true;  // don't pay for an EAGAIN call
  }
  return Int(env, static_cast<double>(count));
}

}  // namespace

void RegisterSockets(napi_env env, napi_value exports) {
  static const Export functions[] = {
      {"udpOpen", UdpOpen},
      {"localPort", LocalPort},
      {"rawOpen", RawOpen},
      {"rawSendOpen", RawSendOpen},
      {"recvBatch", RecvBatch},
      {"sendBatch", SendBatch},
      {"udpSenderOpen", UdpSenderOpen},
      {"udpGroEnable", UdpGroEnable},
      {"udpSendRuns", UdpSendRuns},
      {"udpGroReceive", UdpGroReceive},
  };
  DefineFunctions(env, exports, functions);
}

}  // namespace vrio
