// bpf.cc: see bpf.h.
#include "bpf.h"

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <sys/syscall.h>

// Linux 6.6: tcx, BPF links on the tc hooks without a qdisc. The build's
// headers may predate it; the running kernel answers EINVAL if it lacks it.
#ifndef BPF_TCX_INGRESS
#define BPF_TCX_INGRESS 46
#endif

namespace vrio {
namespace {

long Bpf(int command, union bpf_attr* attr) {
  return syscall(__NR_bpf, command, attr, sizeof *attr);
}

// struct bpf_insn, field by field (dst and src registers share a byte).
constexpr struct bpf_insn Insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  return {code, dst, src, off, imm};
}

int ProgLoad(uint32_t type, const struct bpf_insn* instructions, uint32_t count) {
  static const char license[] = "GPL";
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_type = type;
  attr.insns = reinterpret_cast<uint64_t>(instructions);
  attr.insn_cnt = count;
  attr.license = reinterpret_cast<uint64_t>(license);
  if (type == BPF_PROG_TYPE_XDP) attr.expected_attach_type = BPF_XDP;
  return static_cast<int>(Bpf(BPF_PROG_LOAD, &attr));
}

int LinkCreate(int prog_fd, int ifindex, uint32_t attach_type) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.link_create.prog_fd = static_cast<uint32_t>(prog_fd);
  attr.link_create.target_ifindex = static_cast<uint32_t>(ifindex);
  attr.link_create.attach_type = attach_type;
  return static_cast<int>(Bpf(BPF_LINK_CREATE, &attr));  // bpf(2) fds are close-on-exec
}

}  // namespace

int XskMapCreate(unsigned entries) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_type = BPF_MAP_TYPE_XSKMAP;
  attr.key_size = 4;
  attr.value_size = 4;
  attr.max_entries = entries;
  return static_cast<int>(Bpf(BPF_MAP_CREATE, &attr));
}

int XskMapSet(int map_fd, unsigned queue, int socket_fd) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  uint32_t key = queue, value = static_cast<uint32_t>(socket_fd);
  attr.map_fd = static_cast<uint32_t>(map_fd);
  attr.key = reinterpret_cast<uint64_t>(&key);
  attr.value = reinterpret_cast<uint64_t>(&value);
  attr.flags = BPF_ANY;
  return Bpf(BPF_MAP_UPDATE_ELEM, &attr) == 0 ? 0 : errno;
}

int XdpRedirectToXskLoad(int map_fd) {
  // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index.
  constexpr int16_t kRxQueueIndex = 4 * 4;
  const struct bpf_insn program[] = {
      Insn(BPF_LDX | BPF_W | BPF_MEM, BPF_REG_2, BPF_REG_1, kRxQueueIndex, 0),  // r2 = ctx->rx_queue_index
      Insn(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, map_fd),  // r1 = the XSKMAP (two slots)
      Insn(0, 0, 0, 0, 0),
      Insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_3, 0, 0, XDP_DROP),  // r3 = action when the slot is empty
      Insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_redirect_map),      // r0 = bpf_redirect_map(r1, r2, r3)
      Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
  };
  return ProgLoad(BPF_PROG_TYPE_XDP, program, sizeof program / sizeof program[0]);
}

int TcDropLoad() {
  const struct bpf_insn program[] = {
      Insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, TC_ACT_SHOT),
      Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
  };
  return ProgLoad(BPF_PROG_TYPE_SCHED_CLS, program, sizeof program / sizeof program[0]);
}

int XdpLinkCreate(int prog_fd, int ifindex) { return LinkCreate(prog_fd, ifindex, BPF_XDP); }

int TcxIngressLinkCreate(int prog_fd, int ifindex) { return LinkCreate(prog_fd, ifindex, BPF_TCX_INGRESS); }

}  // namespace vrio
