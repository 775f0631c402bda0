// bpf.h: the two tiny BPF programs the veth ports need, built as raw
// instructions and loaded with the bpf(2) syscall, and the BPF links that
// attach them. No clang, no libbpf: nothing beyond g++ and the kernel
// headers at install time, and nothing at all at run time.
//
// Everything is an fd: closing the link fd detaches the program, closing the
// last fd of a program or map frees it, so a port that goes (or a process
// that exits) leaves nothing attached behind it.
#pragma once

#include "common.h"

namespace vrio {

// An XSKMAP of `entries` slots (key: rx queue index, value: AF_XDP socket fd).
// Returns the map fd, or -1 with errno.
int XskMapCreate(unsigned entries);
// xskmap[queue] = socket fd. Returns 0 or the errno.
int XskMapSet(int map_fd, unsigned queue, int socket_fd);
// The XDP program: bpf_redirect_map(xskmap, ctx->rx_queue_index, XDP_DROP).
// A frame on a queue without a socket is dropped, never passed to the host
// stack. Returns the program fd, or -1 with errno.
int XdpRedirectToXskLoad(int map_fd);
// A tc (SCHED_CLS) program that returns TC_ACT_SHOT: frames an AF_PACKET
// socket has already seen stop before the host stack (tc's gact is not
// built into every kernel; this needs only the tcx hook). -1 with errno.
int TcDropLoad();
// A BPF link attaching `prog_fd` to interface `ifindex`: XDP (native mode
// where the driver has it) or tcx ingress. Returns the link fd, or -1.
int XdpLinkCreate(int prog_fd, int ifindex);
int TcxIngressLinkCreate(int prog_fd, int ifindex);

}  // namespace vrio
