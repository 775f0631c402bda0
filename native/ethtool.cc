// ethtool.cc: see ethtool.h.
#include "ethtool.h"

#include "netlink.h"

#include <linux/ethtool_netlink.h>
#include <linux/genetlink.h>

namespace vrio {
namespace {

// The kernel's names of the features ETHTOOL_MSG_FEATURES_SET clears
// (net/ethtool/common.c, netdev_features_strings).
const char* const kTxOffloads[] = {
    "tx-checksum-ip-generic", "tx-checksum-ipv4",  "tx-checksum-ipv6",          "tx-generic-segmentation",
    "tx-tcp-segmentation",    "tx-tcp6-segmentation", "tx-tcp-ecn-segmentation", "tx-tcp-mangleid-segmentation",
    "tx-udp-segmentation",
};

void ReadFamilyId(const struct nlmsghdr* reply, void* context) {
  const auto* header = static_cast<const struct genlmsghdr*>(NLMSG_DATA(reply));
  const char* end = reinterpret_cast<const char*>(reply) + reply->nlmsg_len;
  for (const auto* attribute = reinterpret_cast<const struct nlattr*>(reinterpret_cast<const char*>(header) + GENL_HDRLEN);
       reinterpret_cast<const char*>(attribute) + NLA_HDRLEN <= end && attribute->nla_len >= NLA_HDRLEN;
       attribute = reinterpret_cast<const struct nlattr*>(reinterpret_cast<const char*>(attribute) + NLA_ALIGN(attribute->nla_len))) {
    if ((attribute->nla_type & NLA_TYPE_MASK) == CTRL_ATTR_FAMILY_ID) {
      memcpy(context, reinterpret_cast<const char*>(attribute) + NLA_HDRLEN, sizeof(uint16_t));
    }
  }
}

}  // namespace

int DisableTxOffloads(const char* ifname, const char** failed) {
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
  if (fd < 0) {
    *failed = "socket(NETLINK_GENERIC)";
    return errno;
  }
  NetlinkRequest request;
  struct genlmsghdr command = {};
  command.cmd = CTRL_CMD_GETFAMILY;
  command.version = 1;
  request.Begin(GENL_ID_CTRL, 0, &command, sizeof command);
  request.String(CTRL_ATTR_FAMILY_NAME, ETHTOOL_GENL_NAME);
  uint16_t family = 0;
  int err = NetlinkTalk(fd, &request, ReadFamilyId, &family);
  *failed = "CTRL_CMD_GETFAMILY (ethtool)";
  if (err == 0 && family == 0) err = ENOENT;
  if (err == 0) {
    command.cmd = ETHTOOL_MSG_FEATURES_SET;
    command.version = ETHTOOL_GENL_VERSION;
    request.Begin(family, 0, &command, sizeof command);
    const size_t header = request.Nest(ETHTOOL_A_FEATURES_HEADER | NLA_F_NESTED);
    request.String(ETHTOOL_A_HEADER_DEV_NAME, ifname);
    request.End(header);
    // A bit list without ETHTOOL_A_BITSET_NOMASK: only the named bits
    // change, each to off (no ETHTOOL_A_BITSET_BIT_VALUE flag).
    const size_t wanted = request.Nest(ETHTOOL_A_FEATURES_WANTED | NLA_F_NESTED);
    const size_t bits = request.Nest(ETHTOOL_A_BITSET_BITS | NLA_F_NESTED);
    for (const char* name : kTxOffloads) {
      const size_t bit = request.Nest(ETHTOOL_A_BITSET_BITS_BIT | NLA_F_NESTED);
      request.String(ETHTOOL_A_BITSET_BIT_NAME, name);
      request.End(bit);
    }
    request.End(bits);
    request.End(wanted);
    err = NetlinkTalk(fd, &request);
    *failed = "ETHTOOL_MSG_FEATURES_SET (tx offloads off)";
  }
  CloseQuietly(fd);
  return err;
}

}  // namespace vrio
