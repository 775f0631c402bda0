// ethtool.h: turning a device's offloads off over ethtool netlink (the
// generic netlink family "ethtool", ETHTOOL_MSG_FEATURES_SET), as
// `ethtool -K` does, without running a process.
//
// Why: a pod's veth would otherwise hand its peer frames with the checksum
// left to "hardware" (CHECKSUM_PARTIAL) and TCP/UDP super-frames of up to
// 64 KiB (TSO/GSO). AF_XDP in copy mode and AF_PACKET see such a frame as
// bytes: a wrong checksum and a length no MTU allows. With these off, the
// pod's kernel sends every frame complete and at most MTU long.
#pragma once

namespace vrio {

// Turns off tx checksumming, scatter-gather dependent segmentation (TSO for
// IPv4/IPv6, ECN, mangle-id), GSO and UDP segmentation on `ifname` in the
// calling thread's namespace. Returns 0, or the errno with *failed naming
// the step.
int DisableTxOffloads(const char* ifname, const char** failed);

}  // namespace vrio
