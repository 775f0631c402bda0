// packet_ring.cc: AF_PACKET sockets on a veth's host end, the fallback where
// AF_XDP is refused (no XDP in the kernel, a container without bpf(2), ...):
// a TPACKET_V2 receive ring mapped into this process, so receiving a batch
// costs no system call while the ring holds frames, and sendmmsg(2) for
// transmit with PACKET_QDISC_BYPASS, one system call per batch straight to
// the device. Measured on this machine kind at 1.46x the bridge against
// AF_XDP's 1.7-1.8x (shared/reference/performance-baselines.md).
//
// An AF_PACKET socket only taps the device: the frames the pod sends would
// also climb the host's stack (ARP answered by the host, ICMP errors...).
// A tc program returning TC_ACT_SHOT (bpf.cc), attached to the tcx ingress
// hook by a BPF link, drops them there, after the socket has its copy.
#include "bpf.h"
#include "common.h"

#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include <memory>
#include <unordered_map>

namespace vrio {
namespace {

// A slot holds the tpacket2 header, the sockaddr_ll and the frame: 2 KiB
// up to a 1500-byte MTU plus room for a VLAN tag, the next power of two
// above for jumbo pods. The ring is 4 MiB whatever the slot.
constexpr uint32_t kMinFrameSize = 2048;
constexpr uint32_t kSlotOverhead = 128;  // TPACKET2_HDRLEN, sockaddr_ll, alignment
constexpr uint32_t kBlockSize = 1 << 16;
constexpr uint32_t kBlocks = 64;

uint32_t FrameSizeFor(int mtu) {
  uint32_t size = kMinFrameSize;
  while (size < static_cast<uint32_t>(mtu) + ETH_HLEN + 4 + kSlotOverhead && size < kBlockSize) size <<= 1;
  return size;
}

struct PacketRing {
  int fd = -1;
  int prog_fd = -1;
  int link_fd = -1;
  uint8_t* ring = nullptr;
  uint32_t frame_size = kMinFrameSize;
  uint32_t frames = kBlocks * (kBlockSize / kMinFrameSize);  // the receive loop wraps at it
  uint32_t next = 0;  // the frame the kernel fills next
  bool ignores_outgoing = false;

  ~PacketRing() {
    if (link_fd >= 0) CloseQuietly(link_fd);
    if (prog_fd >= 0) CloseQuietly(prog_fd);
    if (ring != nullptr) munmap(ring, static_cast<size_t>(kBlockSize) * kBlocks);
    if (fd >= 0) CloseQuietly(fd);
  }

  struct tpacket2_hdr* Frame(uint32_t i) { return reinterpret_cast<struct tpacket2_hdr*>(ring + static_cast<size_t>(i) * frame_size); }
};

thread_local std::unordered_map<int, std::unique_ptr<PacketRing>> tls_rings;

int Setup(PacketRing* p, int ifindex, const char** failed) {
  *failed = "socket(AF_PACKET)";
  // Protocol 0: nothing is queued before bind names the device.
  p->fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (p->fd < 0) return errno;
  const int version = TPACKET_V2;
  *failed = "setsockopt(PACKET_VERSION, TPACKET_V2)";
  if (setsockopt(p->fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) != 0) return errno;
  struct tpacket_req request = {kBlockSize, kBlocks, p->frame_size, p->frames};
  *failed = "setsockopt(PACKET_RX_RING)";
  if (setsockopt(p->fd, SOL_PACKET, PACKET_RX_RING, &request, sizeof request) != 0) return errno;
  *failed = "mmap (PACKET_RX_RING)";
  void* ring = mmap(nullptr, static_cast<size_t>(kBlockSize) * kBlocks, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, p->fd, 0);
  if (ring == MAP_FAILED) return errno;
  p->ring = static_cast<uint8_t*>(ring);
  const int on = 1;
  *failed = "setsockopt(PACKET_QDISC_BYPASS)";
  if (setsockopt(p->fd, SOL_PACKET, PACKET_QDISC_BYPASS, &on, sizeof on) != 0) return errno;
  // Linux 4.20: our own transmissions are not looped back into the ring.
  // Without it, Receive skips them by their packet type.
  p->ignores_outgoing = setsockopt(p->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &on, sizeof on) == 0;
  struct sockaddr_ll address = {};
  address.sll_family = AF_PACKET;
  address.sll_protocol = htons(ETH_P_ALL);
  address.sll_ifindex = ifindex;
  *failed = "bind(AF_PACKET)";
  if (bind(p->fd, reinterpret_cast<struct sockaddr*>(&address), sizeof address) != 0) return errno;
  *failed = "bpf(BPF_PROG_LOAD, tc drop)";
  p->prog_fd = TcDropLoad();
  if (p->prog_fd < 0) return errno;
  *failed = "bpf(BPF_LINK_CREATE, tcx ingress)";
  p->link_fd = TcxIngressLinkCreate(p->prog_fd, ifindex);
  if (p->link_fd < 0) return errno;
  return 0;
}

PacketRing* Find(napi_env env, const char* fn, int fd) {
  auto found = tls_rings.find(fd);
  if (found != tls_rings.end()) return found->second.get();
  char message[96];
  snprintf(message, sizeof message, "%s: fd %d is not a packet ring of this thread (packetRingOpen)", fn, fd);
  ThrowRange(env, message);
  return nullptr;
}

// packetRingOpen(ifname): number
// An AF_PACKET socket bound to `ifname` with its TPACKET_V2 RX ring, qdisc
// bypass on transmit, and the tcx drop program on the device's ingress.
// Slots are sized by the device's MTU.
// Pollable: EPOLLIN while the ring holds a frame. Errors name the step.
napi_value PacketRingOpen(napi_env env, napi_callback_info info) {
  const char* fn = "packetRingOpen";
  Args args;
  char name[IFNAMSIZ] = {0};
  if (!GetArgs(env, info, fn, 1, &args) || !GetShortString(env, args.v[0], fn, "ifname", name, IFNAMSIZ - 1)) return nullptr;
  const int ifindex = static_cast<int>(if_nametoindex(name));
  if (ifindex == 0) {
    ThrowErrno(env, "if_nametoindex", name, errno);
    return nullptr;
  }
  const int mtu = DeviceMtu(name);
  if (mtu < 0) {
    ThrowErrno(env, "ioctl(SIOCGIFMTU)", name, -mtu);
    return nullptr;
  }
  auto ring = std::make_unique<PacketRing>();
  ring->frame_size = FrameSizeFor(mtu);
  ring->frames = kBlocks * (kBlockSize / ring->frame_size);
  const char* failed = nullptr;
  if (const int err = Setup(ring.get(), ifindex, &failed); err != 0) {
    ThrowErrno(env, failed, name, err);
    return nullptr;
  }
  const int fd = ring->fd;
  tls_rings[fd] = std::move(ring);
  return Int(env, fd);
}

// packetRingReceive(fd, buffer, offsets, lengths, max, capacity): number
// Copies up to `max` frames out of the ring (as readBatch: cut to capacity)
// and hands their slots back to the kernel. No system call.
napi_value PacketRingReceive(napi_env env, napi_callback_info info) {
  const char* fn = "packetRingReceive";
  Args args;
  FrameArrays frames;
  int64_t max = 0, capacity = 0;
  if (!GetArgs(env, info, fn, 6, &args) || !GetFrameArrays(env, args, fn, 4, "max", &frames, &max) ||
      !GetInteger(env, args.v[5], fn, "capacity", 1, INT32_MAX, &capacity) ||
      !CheckFrames(env, fn, frames.buffer_length, frames.offsets, nullptr, capacity, max)) {
    return nullptr;
  }
  PacketRing* p = Find(env, fn, frames.fd);
  if (p == nullptr) return nullptr;
  int64_t count = 0;
  while (count < max) {
    struct tpacket2_hdr* header = p->Frame(p->next);
    if ((__atomic_load_n(&header->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) == 0) break;
    const auto* link = reinterpret_cast<const struct sockaddr_ll*>(reinterpret_cast<uint8_t*>(header) +
                                                                   TPACKET_ALIGN(sizeof(struct tpacket2_hdr)));
    if (p->ignores_outgoing || link->sll_pkttype != PACKET_OUTGOING) {
      int64_t offset = 0, span = 0;
      if (!LoadFrame(env, fn, frames.buffer_length, frames.offsets, nullptr, capacity, count, &offset, &span)) return nullptr;
      const uint32_t length = header->tp_snaplen < span ? header->tp_snaplen : static_cast<uint32_t>(span);
      if (header->tp_len > length) tls_stats.rxTruncated += 1;
      memcpy(frames.buffer + offset, reinterpret_cast<uint8_t*>(header) + header->tp_mac, length);
      frames.lengths[count++] = static_cast<int32_t>(length);
    }
    __atomic_store_n(&header->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    if (++p->next == p->frames) p->next = 0;
  }
  return Int(env, static_cast<double>(count));
}

// packetSend(fd, buffer, offsets, lengths, count): number
// sendmmsg(2) of whole Ethernet frames out of the bound device, past the
// qdisc. Returns frames done, as writeBatch: sent or dropped and counted;
// fewer than count only when the device would block.
napi_value PacketSend(napi_env env, napi_callback_info info) {
  const char* fn = "packetSend";
  Args args;
  FrameArrays frames;
  int64_t count = 0;
  if (!GetArgs(env, info, fn, 5, &args) || !GetFrameArrays(env, args, fn, 4, "count", &frames, &count) ||
      !CheckFrames(env, fn, frames.buffer_length, frames.offsets, frames.lengths, 0, count)) {
    return nullptr;
  }
  struct mmsghdr messages[kChunk];
  struct iovec vectors[kChunk];
  int64_t done = 0;
  while (done < count) {
    const int chunk = count - done < kChunk ? static_cast<int>(count - done) : kChunk;
    for (int j = 0; j < chunk; j++) {
      int64_t offset = 0, span = 0;
      if (!LoadFrame(env, fn, frames.buffer_length, frames.offsets, frames.lengths, 0, done + j, &offset, &span)) return nullptr;
      vectors[j].iov_base = frames.buffer + offset;
      vectors[j].iov_len = static_cast<size_t>(span);
      memset(&messages[j].msg_hdr, 0, sizeof messages[j].msg_hdr);
      messages[j].msg_hdr.msg_iov = &vectors[j];
      messages[j].msg_hdr.msg_iovlen = 1;
    }
    const int n = sendmmsg(frames.fd, messages, static_cast<unsigned>(chunk), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      done += n;
      continue;
    }
    const int err = n < 0 ? errno : EAGAIN;
    if (err == EINTR) continue;
    if (err == EAGAIN) break;
    if (IsFdError(err)) {
      if (done == 0) {
        ThrowFdErrno(env, "sendmmsg", frames.fd, err);
        return nullptr;
      }
      break;
    }
    CountTxDrop(err);  // this frame only (ENOBUFS, EMSGSIZE, ENETDOWN)
    done++;
  }
  return Int(env, static_cast<double>(done));
}

// packetRingStats(fd): { packets, drops }: PACKET_STATISTICS since the last
// call (the kernel resets them on read): frames the socket saw, and those
// it dropped because the ring was full.
napi_value PacketRingStats(napi_env env, napi_callback_info info) {
  const char* fn = "packetRingStats";
  Args args;
  int fd = 0;
  if (!GetArgs(env, info, fn, 1, &args) || !GetFd(env, args.v[0], fn, "fd", &fd)) return nullptr;
  struct tpacket_stats stats = {};
  socklen_t length = sizeof stats;
  if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &stats, &length) != 0) {
    ThrowFdErrno(env, "getsockopt(PACKET_STATISTICS)", fd, errno);
    return nullptr;
  }
  napi_value result = nullptr;
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "packets", Int(env, stats.tp_packets));
  napi_set_named_property(env, result, "drops", Int(env, stats.tp_drops));
  return result;
}

// packetRingClose(fd): void. Detaches the drop program, unmaps, closes.
napi_value PacketRingClose(napi_env env, napi_callback_info info) {
  const char* fn = "packetRingClose";
  Args args;
  int fd = 0;
  if (!GetArgs(env, info, fn, 1, &args) || !GetFd(env, args.v[0], fn, "fd", &fd)) return nullptr;
  if (Find(env, fn, fd) == nullptr) return nullptr;
  tls_rings.erase(fd);
  return Undefined(env);
}

// packetRingCloseMany(fds: Int32Array): void. Releases these AF_PACKET rings of this thread
// together (see RunInParallel): each release waits for a grace period.
napi_value PacketRingCloseMany(napi_env env, napi_callback_info info) {
  return ReleaseTogether(env, info, "packetRingCloseMany", tls_rings, Find);
}

}  // namespace

void RegisterPacketRing(napi_env env, napi_value exports) {
  static const Export functions[] = {
      {"packetRingOpen", PacketRingOpen},   {"packetRingReceive", PacketRingReceive},
      {"packetSend", PacketSend},           {"packetRingStats", PacketRingStats},
      {"packetRingClose", PacketRingClose}, {"packetRingCloseMany", PacketRingCloseMany},
  };
  DefineFunctions(env, exports, functions);
}

}  // namespace vrio
