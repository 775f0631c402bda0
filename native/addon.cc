// addon.cc, the vrouter_io addon: synchronous, batched Linux packet I/O for the vrouter's packet
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
//
// One file per kernel interface, each with its own header comment:
//   common.h    errors, argument parsing, counters (shared by all)
//   fds.cc      close, epoll, eventfd
//   tap.cc      TAP devices, a pod's TAP in its namespace
//   netlink.*   rtnetlink requests, a pod interface's addressing
//   io_uring.cc batched TAP reads and writes
//   sockets.cc  UDP and raw IPv4 sockets, recvmmsg/sendmmsg (UDP GSO/GRO)
//   veth.cc     a pod's veth pair, made and configured over rtnetlink
//   ethtool.*   tx offloads off over ethtool netlink
//   xsk.cc      AF_XDP sockets: UMEM, fill/completion/RX/TX rings
//   bpf.*       the XDP and tc programs (raw instructions), XSKMAP, BPF links
//   packet_ring.cc  AF_PACKET TPACKET_V2 ring + sendmmsg, the AF_XDP fallback
//   generator.cc    bench:pps's traffic generator (AF_PACKET or UDP, sendmmsg)
#include "common.h"

namespace vrio {
namespace {

// ioStats(): { txDropped, lastTxErrno, rxTruncated, batchSyscalls, gsoSends,
// gsoSegments, groBuffers, groSegments, ioUring },
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
  napi_set_named_property(env, result, "gsoSends", Int(env, tls_stats.gsoSends));
  napi_set_named_property(env, result, "gsoSegments", Int(env, tls_stats.gsoSegments));
  napi_set_named_property(env, result, "groBuffers", Int(env, tls_stats.groBuffers));
  napi_set_named_property(env, result, "groSegments", Int(env, tls_stats.groSegments));
  napi_get_boolean(env, ThreadUsesIoUring(), &uring);
  napi_set_named_property(env, result, "ioUring", uring);
  return result;
}

}  // namespace
}  // namespace vrio

NAPI_MODULE_INIT() {
  vrio::RegisterFds(env, exports);
  vrio::RegisterTap(env, exports);
  vrio::RegisterIoUring(env, exports);
  vrio::RegisterSockets(env, exports);
  vrio::RegisterVeth(env, exports);
  vrio::RegisterXsk(env, exports);
  vrio::RegisterPacketRing(env, exports);
  vrio::RegisterGenerator(env, exports);
  static const vrio::Export functions[] = {{"ioStats", vrio::IoStats}};
  vrio::DefineFunctions(env, exports, functions);
  return exports;
}
