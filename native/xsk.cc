// xsk.cc: AF_XDP sockets (XSK) on a veth's host end, in copy mode: the
// UMEM, its fill and completion rings, the RX and TX rings, need_wakeup,
// and the XDP program (bpf.cc) that redirects every frame the pod sends to
// the socket, attached by a BPF link.
//
// Why AF_XDP: a TAP moves one frame per read(2)/write(2) and costs ~2 us
// per frame in the kernel; an XSK hands over whole batches through shared
// rings, so the worker makes one sendto(2) kick per TX batch and no system
// call at all to receive while the RX ring has frames (see
// shared/reference/performance-baselines.md: 1.7-1.8x the bridge on the
// same 2 vCPUs, against 1.0x for TAP). veth has no zero-copy mode, so the
// kernel copies each frame into (RX) or out of (TX) the UMEM, and we copy
// it between the UMEM and the caller's packet buffer: the JS side keeps
// one buffer layout for every port kind and never sees UMEM addresses.
//
// Layout: the UMEM is kFrames frames of kFrameSize bytes; the first half is
// only ever on the fill ring or the RX ring (a received frame is copied out
// and its buffer goes straight back to the fill ring, so the fill ring never
// runs dry while the worker keeps up), the second half is TX buffers,
// taken from a free list and returned by the completion ring.
//
// The state of each socket lives here, keyed by the socket's fd, in the
// thread that opened it (thread_local): only the dataplane worker uses it.
// xskClose releases it all; if the process dies, the kernel closes the fds,
// which detaches the XDP link and frees map and program.
#include "bpf.h"
#include "common.h"

#include <linux/if_ether.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/mman.h>

#include <memory>
#include <unordered_map>

#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9  // Linux 6.17: descriptors one TX kick may send (default 32)
#endif

namespace vrio {
namespace {

constexpr uint32_t kFrameSize = kXskChunkSize;
constexpr uint32_t kRingSize = 2048;  // every ring; a power of two
constexpr uint32_t kFrames = 2 * kRingSize;
constexpr uint32_t kRxFrames = kRingSize;
// Kicks a TX batch may take: copy mode sends at most the TX budget per kick.
constexpr int kMaxKicks = 64;

// One mapped ring: producer and consumer indexes shared with the kernel,
// its flags word (need_wakeup) and its descriptors.
struct Ring {
  uint32_t* producer = nullptr;
  uint32_t* consumer = nullptr;
  uint32_t* flags = nullptr;
  void* descriptors = nullptr;
  void* map = MAP_FAILED;
  size_t map_length = 0;

  uint64_t* Addresses() const { return static_cast<uint64_t*>(descriptors); }
  struct xdp_desc* Descs() const { return static_cast<struct xdp_desc*>(descriptors); }
  bool NeedsWakeup() const { return (__atomic_load_n(flags, __ATOMIC_RELAXED) & XDP_RING_NEED_WAKEUP) != 0; }
};

struct Xsk {
  int fd = -1;
  int map_fd = -1;
  int prog_fd = -1;
  int link_fd = -1;
  uint8_t* umem = nullptr;
  Ring fill, completion, rx, tx;
  uint32_t free_tx[kFrames - kRxFrames];
  uint32_t free_count = 0;
  uint32_t tx_budget = 32;
  double tx_no_buffer = 0;  // frames dropped: no free TX buffer or TX ring slot
  double kicks = 0;         // sendto(2) calls that pushed TX descriptors to the kernel
  double wakeups = 0;       // recvfrom(2) calls the fill ring's need_wakeup asked for

  ~Xsk() {
    if (link_fd >= 0) CloseQuietly(link_fd);
    if (prog_fd >= 0) CloseQuietly(prog_fd);
    if (map_fd >= 0) CloseQuietly(map_fd);
    for (Ring* ring : {&fill, &completion, &rx, &tx}) {
      if (ring->map != MAP_FAILED) munmap(ring->map, ring->map_length);
    }
    if (fd >= 0) CloseQuietly(fd);
    if (umem != nullptr) munmap(umem, static_cast<size_t>(kFrames) * kFrameSize);
  }
};

thread_local std::unordered_map<int, std::unique_ptr<Xsk>> tls_sockets;

bool MapRing(int fd, Ring* ring, const struct xdp_ring_offset& offsets, uint64_t page_offset, size_t descriptor_size) {
  ring->map_length = offsets.desc + kRingSize * descriptor_size;
  ring->map = mmap(nullptr, ring->map_length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                   static_cast<off_t>(page_offset));
  if (ring->map == MAP_FAILED) return false;
  char* base = static_cast<char*>(ring->map);
  ring->producer = reinterpret_cast<uint32_t*>(base + offsets.producer);
  ring->consumer = reinterpret_cast<uint32_t*>(base + offsets.consumer);
  ring->flags = reinterpret_cast<uint32_t*>(base + offsets.flags);
  ring->descriptors = base + offsets.desc;
  return true;
}

// VROUTER_AF_XDP=0 (or off/false/no) makes every bind fail as if the kernel
// refused it: for the fallback's tests, and as an escape hatch.
bool RefusedByEnvironment() {
  const char* value = getenv("VROUTER_AF_XDP");
  if (value == nullptr) return false;
  return strcmp(value, "0") == 0 || strcasecmp(value, "off") == 0 || strcasecmp(value, "false") == 0 ||
         strcasecmp(value, "no") == 0;
}

// Sets up socket, UMEM, rings, map and program on `ifindex` queue `queue`.
// Returns 0, or the errno with *failed naming the step.
int Setup(Xsk* xsk, int ifindex, uint32_t queue, const char** failed) {
  const size_t umem_length = static_cast<size_t>(kFrames) * kFrameSize;
  void* umem = mmap(nullptr, umem_length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  *failed = "mmap (UMEM)";
  if (umem == MAP_FAILED) return errno;
  xsk->umem = static_cast<uint8_t*>(umem);
  *failed = "socket(AF_XDP)";
  xsk->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (xsk->fd < 0) return errno;
  struct xdp_umem_reg reg = {};
  reg.addr = reinterpret_cast<uint64_t>(umem);
  reg.len = umem_length;
  reg.chunk_size = kFrameSize;
  *failed = "setsockopt(XDP_UMEM_REG)";
  if (setsockopt(xsk->fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof reg) != 0) return errno;
  const uint32_t size = kRingSize;
  const struct {
    int option;
    const char* name;
  } rings[] = {{XDP_UMEM_FILL_RING, "setsockopt(XDP_UMEM_FILL_RING)"},
               {XDP_UMEM_COMPLETION_RING, "setsockopt(XDP_UMEM_COMPLETION_RING)"},
               {XDP_RX_RING, "setsockopt(XDP_RX_RING)"},
               {XDP_TX_RING, "setsockopt(XDP_TX_RING)"}};
  for (const auto& ring : rings) {
    *failed = ring.name;
    if (setsockopt(xsk->fd, SOL_XDP, ring.option, &size, sizeof size) != 0) return errno;
  }
  struct xdp_mmap_offsets offsets = {};
  socklen_t length = sizeof offsets;
  *failed = "getsockopt(XDP_MMAP_OFFSETS)";
  if (getsockopt(xsk->fd, SOL_XDP, XDP_MMAP_OFFSETS, &offsets, &length) != 0) return errno;
  *failed = "mmap (AF_XDP rings)";
  if (!MapRing(xsk->fd, &xsk->fill, offsets.fr, XDP_UMEM_PGOFF_FILL_RING, sizeof(uint64_t)) ||
      !MapRing(xsk->fd, &xsk->completion, offsets.cr, XDP_UMEM_PGOFF_COMPLETION_RING, sizeof(uint64_t)) ||
      !MapRing(xsk->fd, &xsk->rx, offsets.rx, XDP_PGOFF_RX_RING, sizeof(struct xdp_desc)) ||
      !MapRing(xsk->fd, &xsk->tx, offsets.tx, XDP_PGOFF_TX_RING, sizeof(struct xdp_desc))) {
    return errno;
  }
  // The RX half of the UMEM goes onto the fill ring at once.
  for (uint32_t i = 0; i < kRxFrames; i++) xsk->fill.Addresses()[i] = static_cast<uint64_t>(i) * kFrameSize;
  __atomic_store_n(xsk->fill.producer, kRxFrames, __ATOMIC_RELEASE);
  for (uint32_t i = kRxFrames; i < kFrames; i++) xsk->free_tx[xsk->free_count++] = i * kFrameSize;
  struct sockaddr_xdp address = {};
  address.sxdp_family = AF_XDP;
  address.sxdp_flags = XDP_COPY | XDP_USE_NEED_WAKEUP;
  address.sxdp_ifindex = static_cast<uint32_t>(ifindex);
  address.sxdp_queue_id = queue;
  *failed = "bind(AF_XDP, copy mode)";
  if (RefusedByEnvironment()) return EPERM;
  if (bind(xsk->fd, reinterpret_cast<struct sockaddr*>(&address), sizeof address) != 0) return errno;
  // Where the kernel has it: one kick may send a whole ring, not 32 frames.
  const uint32_t budget = kRingSize;
  if (setsockopt(xsk->fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget, sizeof budget) == 0) xsk->tx_budget = budget;
  *failed = "bpf(BPF_MAP_CREATE, XSKMAP)";
  xsk->map_fd = XskMapCreate(queue + 1);
  if (xsk->map_fd < 0) return errno;
  *failed = "bpf(BPF_MAP_UPDATE_ELEM, XSKMAP)";
  if (const int err = XskMapSet(xsk->map_fd, queue, xsk->fd); err != 0) return err;
  *failed = "bpf(BPF_PROG_LOAD, XDP redirect to XSKMAP)";
  xsk->prog_fd = XdpRedirectToXskLoad(xsk->map_fd);
  if (xsk->prog_fd < 0) return errno;
  *failed = "bpf(BPF_LINK_CREATE, XDP)";
  xsk->link_fd = XdpLinkCreate(xsk->prog_fd, ifindex);
  if (xsk->link_fd < 0) return errno;
  return 0;
}

Xsk* Find(napi_env env, const char* fn, int fd) {
  auto found = tls_sockets.find(fd);
  if (found != tls_sockets.end()) return found->second.get();
  char message[96];
  snprintf(message, sizeof message, "%s: fd %d is not an AF_XDP socket of this thread (xskOpen)", fn, fd);
  ThrowRange(env, message);
  return nullptr;
}

// Completed TX buffers back onto the free list.
void Reclaim(Xsk* xsk) {
  const uint32_t producer = __atomic_load_n(xsk->completion.producer, __ATOMIC_ACQUIRE);
  uint32_t consumer = *xsk->completion.consumer;
  while (consumer != producer) {
    xsk->free_tx[xsk->free_count++] = static_cast<uint32_t>(xsk->completion.Addresses()[consumer & (kRingSize - 1)]);
    consumer++;
  }
  __atomic_store_n(xsk->completion.consumer, consumer, __ATOMIC_RELEASE);
}

// xskOpen(ifname, queue): { fd, txBudget }
// An AF_XDP socket in copy mode on queue `queue` of `ifname` with its UMEM
// and rings, and the XDP program redirecting that queue's frames to it.
// The fd is pollable: EPOLLIN while the RX ring holds frames. Errors name
// the step that failed, e.g. "bind(AF_XDP, copy mode) veth3 queue 0:
// Operation not supported"; nothing is left behind then.
napi_value XskOpen(napi_env env, napi_callback_info info) {
  const char* fn = "xskOpen";
  Args args;
  char name[IFNAMSIZ] = {0};
  int64_t queue = 0;
  if (!GetArgs(env, info, fn, 2, &args) || !GetShortString(env, args.v[0], fn, "ifname", name, IFNAMSIZ - 1) ||
      !GetInteger(env, args.v[1], fn, "queue", 0, 255, &queue)) {
    return nullptr;
  }
  const int ifindex = static_cast<int>(if_nametoindex(name));
  if (ifindex == 0) {
    ThrowErrno(env, "if_nametoindex", name, errno);
    return nullptr;
  }
  // A frame longer than a chunk holds is dropped: a jumbo pod goes to AF_PACKET instead.
  const int mtu = DeviceMtu(name);
  if (mtu < 0) {
    ThrowErrno(env, "ioctl(SIOCGIFMTU)", name, -mtu);
    return nullptr;
  }
  if (static_cast<uint32_t>(mtu) + ETH_HLEN > kXskFrameCapacity) {
    char what[IFNAMSIZ + 64];
    snprintf(what, sizeof what, "%s MTU %d (an AF_XDP frame holds %u bytes)", name, mtu, kXskFrameCapacity);
    ThrowErrno(env, "xskOpen", what, EMSGSIZE);
    return nullptr;
  }
  auto xsk = std::make_unique<Xsk>();
  const char* failed = nullptr;
  const int err = Setup(xsk.get(), ifindex, static_cast<uint32_t>(queue), &failed);
  if (err != 0) {
    char what[IFNAMSIZ + 48];
    snprintf(what, sizeof what, "%s queue %lld%s", name, static_cast<long long>(queue),
             err == EPERM && RefusedByEnvironment() ? " (refused: VROUTER_AF_XDP=off)" : "");
    ThrowErrno(env, failed, what, err);
    return nullptr;  // ~Xsk releases what Setup made
  }
  const int fd = xsk->fd;
  const uint32_t budget = xsk->tx_budget;
  tls_sockets[fd] = std::move(xsk);
  napi_value result = nullptr;
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "fd", Int(env, fd));
  napi_set_named_property(env, result, "txBudget", Int(env, budget));
  return result;
}

// xskReceive(fd, buffer, offsets, lengths, max, capacity): number
// Copies up to `max` frames off the RX ring into buffer[offsets[i] ..
// offsets[i] + capacity) (longer frames are cut, as readBatch cuts them),
// gives their UMEM buffers back to the fill ring and returns the count.
// No system call unless the fill ring asks for a wakeup.
napi_value XskReceive(napi_env env, napi_callback_info info) {
  const char* fn = "xskReceive";
  Args args;
  FrameArrays frames;
  int64_t max = 0, capacity = 0;
  if (!GetArgs(env, info, fn, 6, &args) || !GetFrameArrays(env, args, fn, 4, "max", &frames, &max) ||
      !GetInteger(env, args.v[5], fn, "capacity", 1, INT32_MAX, &capacity) ||
      !CheckFrames(env, fn, frames.buffer_length, frames.offsets, nullptr, capacity, max)) {
    return nullptr;
  }
  Xsk* xsk = Find(env, fn, frames.fd);
  if (xsk == nullptr) return nullptr;
  const uint32_t producer = __atomic_load_n(xsk->rx.producer, __ATOMIC_ACQUIRE);
  const uint32_t consumer = *xsk->rx.consumer;
  uint32_t available = producer - consumer;
  if (available > static_cast<uint64_t>(max)) available = static_cast<uint32_t>(max);
  const uint32_t fill_at = *xsk->fill.producer;
  for (uint32_t i = 0; i < available; i++) {
    const struct xdp_desc& desc = xsk->rx.Descs()[(consumer + i) & (kRingSize - 1)];
    int64_t offset = 0, span = 0;
    if (!LoadFrame(env, fn, frames.buffer_length, frames.offsets, nullptr, capacity, i, &offset, &span)) return nullptr;
    const uint32_t length = desc.len < span ? desc.len : static_cast<uint32_t>(span);
    if (desc.len > length) tls_stats.rxTruncated += 1;
    memcpy(frames.buffer + offset, xsk->umem + desc.addr, length);
    frames.lengths[i] = static_cast<int32_t>(length);
    xsk->fill.Addresses()[(fill_at + i) & (kRingSize - 1)] = desc.addr - desc.addr % kFrameSize;
  }
  __atomic_store_n(xsk->rx.consumer, consumer + available, __ATOMIC_RELEASE);
  __atomic_store_n(xsk->fill.producer, fill_at + available, __ATOMIC_RELEASE);
  if (available > 0 && xsk->fill.NeedsWakeup()) {
    xsk->wakeups += 1;
    recvfrom(xsk->fd, nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
  }
  return Int(env, available);
}

// xskSend(fd, buffer, offsets, lengths, count): number
// Copies the frames into free TX buffers, puts them on the TX ring and
// kicks the kernel (sendto) until it has taken them all (copy mode sends at
// most the TX budget per kick). Returns frames done: queued, or dropped and
// counted (no free buffer: the pod is not taking frames as fast as they
// come); always `count` unless an fd error is thrown first.
napi_value XskSend(napi_env env, napi_callback_info info) {
  const char* fn = "xskSend";
  Args args;
  FrameArrays frames;
  int64_t count = 0;
  if (!GetArgs(env, info, fn, 5, &args) || !GetFrameArrays(env, args, fn, 4, "count", &frames, &count) ||
      !CheckFrames(env, fn, frames.buffer_length, frames.offsets, frames.lengths, 0, count)) {
    return nullptr;
  }
  Xsk* xsk = Find(env, fn, frames.fd);
  if (xsk == nullptr) return nullptr;
  Reclaim(xsk);
  uint32_t producer = *xsk->tx.producer;
  const uint32_t ring_free = kRingSize - (producer - __atomic_load_n(xsk->tx.consumer, __ATOMIC_ACQUIRE));
  int64_t queued = 0;
  for (int64_t i = 0; i < count; i++) {
    int64_t offset = 0, span = 0;
    if (!LoadFrame(env, fn, frames.buffer_length, frames.offsets, frames.lengths, 0, i, &offset, &span)) return nullptr;
    if (xsk->free_count == 0 || queued == ring_free || span > kFrameSize) {
      xsk->tx_no_buffer += 1;
      CountTxDrop(ENOBUFS);
      continue;
    }
    const uint32_t address = xsk->free_tx[--xsk->free_count];
    memcpy(xsk->umem + address, frames.buffer + offset, static_cast<size_t>(span));
    struct xdp_desc& desc = xsk->tx.Descs()[producer & (kRingSize - 1)];
    desc.addr = address;
    desc.len = static_cast<uint32_t>(span);
    desc.options = 0;
    producer++;
    queued++;
  }
  __atomic_store_n(xsk->tx.producer, producer, __ATOMIC_RELEASE);
  // Copy mode transmits inside sendto(2), at most the TX budget per call
  // (EAGAIN: more to do; EBUSY/ENOBUFS: the device queue is full for now,
  // the next batch's kick carries on).
  for (int kick = 0; kick < kMaxKicks && __atomic_load_n(xsk->tx.consumer, __ATOMIC_ACQUIRE) != producer; kick++) {
    if (!xsk->tx.NeedsWakeup()) break;
    xsk->kicks += 1;
    if (sendto(xsk->fd, nullptr, 0, MSG_DONTWAIT, nullptr, 0) >= 0) continue;
    if (errno == EAGAIN || errno == EINTR) continue;
    if (errno == EBUSY || errno == ENOBUFS) break;
    if (IsFdError(errno) || errno == ENETDOWN || errno == ENXIO) {
      ThrowFdErrno(env, "sendto(AF_XDP kick)", xsk->fd, errno);
      return nullptr;
    }
    break;
  }
  return Int(env, static_cast<double>(count));
}

// xskStats(fd): { rxDropped, rxInvalid, txInvalid, rxRingFull, fillRingEmpty,
//                 txRingEmpty, txNoBuffer, kicks, wakeups }
// The kernel's XDP_STATISTICS for the socket and this side's own counters.
napi_value XskStats(napi_env env, napi_callback_info info) {
  const char* fn = "xskStats";
  Args args;
  int fd = 0;
  if (!GetArgs(env, info, fn, 1, &args) || !GetFd(env, args.v[0], fn, "fd", &fd)) return nullptr;
  Xsk* xsk = Find(env, fn, fd);
  if (xsk == nullptr) return nullptr;
  struct xdp_statistics stats = {};
  socklen_t length = sizeof stats;
  if (getsockopt(fd, SOL_XDP, XDP_STATISTICS, &stats, &length) != 0) {
    ThrowFdErrno(env, "getsockopt(XDP_STATISTICS)", fd, errno);
    return nullptr;
  }
  napi_value result = nullptr;
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "rxDropped", Int(env, static_cast<double>(stats.rx_dropped)));
  napi_set_named_property(env, result, "rxInvalid", Int(env, static_cast<double>(stats.rx_invalid_descs)));
  napi_set_named_property(env, result, "txInvalid", Int(env, static_cast<double>(stats.tx_invalid_descs)));
  napi_set_named_property(env, result, "rxRingFull", Int(env, static_cast<double>(stats.rx_ring_full)));
  napi_set_named_property(env, result, "fillRingEmpty", Int(env, static_cast<double>(stats.rx_fill_ring_empty_descs)));
  napi_set_named_property(env, result, "txRingEmpty", Int(env, static_cast<double>(stats.tx_ring_empty_descs)));
  napi_set_named_property(env, result, "txNoBuffer", Int(env, xsk->tx_no_buffer));
  napi_set_named_property(env, result, "kicks", Int(env, xsk->kicks));
  napi_set_named_property(env, result, "wakeups", Int(env, xsk->wakeups));
  return result;
}

// xskClose(fd): void. Detaches the XDP program (closes the link) and
// releases map, program, rings, UMEM and socket.
napi_value XskClose(napi_env env, napi_callback_info info) {
  const char* fn = "xskClose";
  Args args;
  int fd = 0;
  if (!GetArgs(env, info, fn, 1, &args) || !GetFd(env, args.v[0], fn, "fd", &fd)) return nullptr;
  if (Find(env, fn, fd) == nullptr) return nullptr;
  tls_sockets.erase(fd);
  return Undefined(env);
}

// xskCloseMany(fds: Int32Array): void. Releases these AF_XDP sockets of this thread
// together (see RunInParallel): each release waits for a grace period.
napi_value XskCloseMany(napi_env env, napi_callback_info info) {
  return ReleaseTogether(env, info, "xskCloseMany", tls_sockets, Find);
}

}  // namespace

void RegisterXsk(napi_env env, napi_value exports) {
  static const Export functions[] = {
      {"xskOpen", XskOpen}, {"xskReceive", XskReceive}, {"xskSend", XskSend},
      {"xskStats", XskStats}, {"xskClose", XskClose}, {"xskCloseMany", XskCloseMany},
  };
  DefineFunctions(env, exports, functions);
}

}  // namespace vrio
