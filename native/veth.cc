// veth.cc: a pod's veth pair, made over rtnetlink as the OpenContrail
// kubelet plugin made it: eth0 inside the pod's namespace, configured there
// (MAC, MTU, address, gateway, default route, tx offloads off), and the
// host end in the vrouter's namespace, up, for an AF_XDP or AF_PACKET
// socket (xsk.cc, packet_ring.cc) to read and write.
//
// The pod end is created directly in the pod's namespace (IFLA_NET_NS_FD on
// the peer): no `ip link set netns` afterwards, which costs the kernel tens
// of milliseconds per device.
#include "common.h"
#include "ethtool.h"
#include "netlink.h"

#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/veth.h>

#include <array>

namespace vrio {
namespace {

int RtnlSocket() { return socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE); }

// The host end's MTU when the pod's is smaller: veth drops a frame longer
// than the receiving end's MTU before anyone sees it, and the vrouter must
// see a too-big frame to answer it with ICMP fragmentation needed, as it does
// for a TAP (which checks nothing). 1778 + 14 bytes is the largest frame an
// AF_XDP socket takes; longer ones are dropped and counted in its XDP statistics.
constexpr uint32_t kHostMinMtu = kXskFrameCapacity - ETH_HLEN;

// RTM_NEWLINK of the pair: `host` here (MTU at least kHostMinMtu), `pod->ifr.ifr_name`
// in the pod's namespace (its fd) with the pod's MTU.
int CreatePair(int rtnl, const char* host, const PodInterface& pod, int netns_fd) {
  const uint32_t host_mtu = pod.mtu > kHostMinMtu ? pod.mtu : kHostMinMtu;
  NetlinkRequest request;
  struct ifinfomsg link = {};
  link.ifi_family = AF_UNSPEC;
  request.Begin(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &link, sizeof link);
  // One queue each way: the pod's frames all arrive on the host end's rx
  // queue 0, the one queue the AF_XDP socket is bound to (veth otherwise
  // makes one per CPU, and XPS would spread the pod's flows over them).
  const uint32_t one = 1;
  request.String(IFLA_IFNAME, host);
  request.Attribute(IFLA_MTU, &host_mtu, sizeof host_mtu);
  request.Attribute(IFLA_NUM_TX_QUEUES, &one, sizeof one);
  request.Attribute(IFLA_NUM_RX_QUEUES, &one, sizeof one);
  const size_t info = request.Nest(IFLA_LINKINFO);
  request.String(IFLA_INFO_KIND, "veth");
  const size_t data = request.Nest(IFLA_INFO_DATA);
  const size_t peer = request.Nest(VETH_INFO_PEER);
  request.Append(&link, sizeof link);
  request.String(IFLA_IFNAME, pod.ifr.ifr_name);
  request.Attribute(IFLA_MTU, &pod.mtu, sizeof pod.mtu);
  request.Attribute(IFLA_ADDRESS, pod.mac, sizeof pod.mac);
  request.Attribute(IFLA_NET_NS_FD, &netns_fd, sizeof netns_fd);
  request.Attribute(IFLA_NUM_TX_QUEUES, &one, sizeof one);
  request.Attribute(IFLA_NUM_RX_QUEUES, &one, sizeof one);
  request.End(peer);
  request.End(data);
  request.End(info);
  return NetlinkTalk(rtnl, &request);
}

int SetUp(int rtnl, int index) {
  NetlinkRequest request;
  struct ifinfomsg link = {};
  link.ifi_family = AF_UNSPEC;
  link.ifi_index = index;
  link.ifi_flags = IFF_UP;
  link.ifi_change = IFF_UP;
  request.Begin(RTM_NEWLINK, 0, &link, sizeof link);
  return NetlinkTalk(rtnl, &request);
}

// Best effort: the host end is a wire to the pod, not an IPv6 host; without
// this it sends router solicitations and DAD probes into the pod.
void DisableIpv6(const char* ifname) {
  char path[96];
  snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
  const int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (write(fd, "1", 1) < 0) {
    // nothing to do: the port works with IPv6 on as well
  }
  CloseQuietly(fd);
}

int DeleteLink(int rtnl, const char* name) {
  NetlinkRequest request;
  struct ifinfomsg link = {};
  link.ifi_family = AF_UNSPEC;
  request.Begin(RTM_DELLINK, 0, &link, sizeof link);
  request.String(IFLA_IFNAME, name);
  return NetlinkTalk(rtnl, &request);
}

// The pod end, in the pod's namespace (the calling thread is there).
int ConfigurePodEnd(const PodInterface& pod, const char** failed) {
  const int index = static_cast<int>(if_nametoindex(pod.ifr.ifr_name));
  if (index == 0) {
    *failed = "if_nametoindex";
    return errno;
  }
  const int rtnl = RtnlSocket();
  if (rtnl < 0) {
    *failed = "socket(NETLINK_ROUTE)";
    return errno;
  }
  int err = ConfigurePodInterface(rtnl, index, pod, failed);
  CloseQuietly(rtnl);
  if (err == 0) err = DisableTxOffloads(pod.ifr.ifr_name, failed);
  return err;
}

// podVethOpen({ netnsPath, ifname, mac, mtu, ip, gateway, hostName }): { name, index }
// Creates the pair, configures the pod end in its namespace and brings the
// host end `hostName` up. On any error the pair is gone again and the error
// names the step, the device and the namespace.
napi_value PodVethOpen(napi_env env, napi_callback_info info) {
  const char* fn = "podVethOpen";
  Args args;
  PodInterface pod;
  char host[IFNAMSIZ] = {0};
  napi_value host_value = nullptr;
  if (!GetArgs(env, info, fn, 1, &args) || !GetPodInterface(env, args.v[0], fn, &pod) ||
      napi_get_named_property(env, args.v[0], "hostName", &host_value) != napi_ok ||
      !GetShortString(env, host_value, fn, "hostName", host, IFNAMSIZ - 1)) {
    return nullptr;
  }
  const int netns_fd = open(pod.netns_path, O_RDONLY | O_CLOEXEC);
  if (netns_fd < 0) {
    ThrowErrno(env, "open", pod.netns_path, errno);
    return nullptr;
  }
  const int rtnl = RtnlSocket();
  if (rtnl < 0) {
    const int err = errno;
    CloseQuietly(netns_fd);
    ThrowErrno(env, "socket", "(NETLINK_ROUTE)", err);
    return nullptr;
  }
  const char* failed = "RTM_NEWLINK (veth pair)";
  int err = CreatePair(rtnl, host, pod, netns_fd);
  CloseQuietly(netns_fd);
  int host_index = 0;
  if (err == 0) {
    PodNamespace netns;
    if (!netns.Enter(env, pod.netns_path)) {
      DeleteLink(rtnl, host);
      CloseQuietly(rtnl);
      return nullptr;
    }
    err = ConfigurePodEnd(pod, &failed);
    netns.Leave();
  }
  if (err == 0) {
    host_index = static_cast<int>(if_nametoindex(host));
    DisableIpv6(host);
    err = host_index == 0 ? errno : SetUp(rtnl, host_index);
    failed = host_index == 0 ? "if_nametoindex (host end)" : "RTM_NEWLINK (host end up)";
  }
  if (err != 0) {
    if (strcmp(failed, "RTM_NEWLINK (veth pair)") != 0) DeleteLink(rtnl, host);
    CloseQuietly(rtnl);
    char what[2 * IFNAMSIZ + sizeof pod.netns_path + 16];
    snprintf(what, sizeof what, "%s (pod end %s in %s)", host, pod.ifr.ifr_name, pod.netns_path);
    ThrowErrno(env, failed, what, err);
    return nullptr;
  }
  CloseQuietly(rtnl);
  napi_value result = nullptr, name = nullptr;
  napi_create_object(env, &result);
  napi_create_string_utf8(env, host, NAPI_AUTO_LENGTH, &name);
  napi_set_named_property(env, result, "name", name);
  napi_set_named_property(env, result, "index", Int(env, host_index));
  return result;
}

// linkDelete(name): void. Deletes an interface of the calling thread's
// namespace (a veth's host end: its pod end goes with it).
napi_value LinkDelete(napi_env env, napi_callback_info info) {
  const char* fn = "linkDelete";
  Args args;
  char name[IFNAMSIZ] = {0};
  if (!GetArgs(env, info, fn, 1, &args) || !GetShortString(env, args.v[0], fn, "name", name, IFNAMSIZ - 1)) return nullptr;
  const int rtnl = RtnlSocket();
  if (rtnl < 0) {
    ThrowErrno(env, "socket", "(NETLINK_ROUTE)", errno);
    return nullptr;
  }
  const int err = DeleteLink(rtnl, name);
  CloseQuietly(rtnl);
  if (err != 0) {
    ThrowErrno(env, "RTM_DELLINK", name, err);
    return nullptr;
  }
  return Undefined(env);
}

// linkDeleteMany(names: string[]): void. linkDelete of each, together (see
// RunInParallel), each thread on its own netlink socket; throws the first
// failure once all were tried.
napi_value LinkDeleteMany(napi_env env, napi_callback_info info) {
  const char* fn = "linkDeleteMany";
  Args args;
  if (!GetArgs(env, info, fn, 1, &args)) return nullptr;
  bool is_array = false;
  uint32_t length = 0;
  if (napi_is_array(env, args.v[0], &is_array) != napi_ok || !is_array || napi_get_array_length(env, args.v[0], &length) != napi_ok) {
    ThrowType(env, fn, "names must be an array of interface names");
    return nullptr;
  }
  std::vector<std::array<char, IFNAMSIZ>> names(length);
  for (uint32_t i = 0; i < length; i++) {
    napi_value element = nullptr;
    names[i].fill(0);
    if (napi_get_element(env, args.v[0], i, &element) != napi_ok ||
        !GetShortString(env, element, fn, "names[]", names[i].data(), IFNAMSIZ - 1)) {
      return nullptr;
    }
  }
  std::vector<int> errors(length, 0);
  std::vector<const char*> failed(length, "RTM_DELLINK");
  RunInParallel(length, [&](size_t i) {
    const int rtnl = RtnlSocket();
    if (rtnl < 0) {
      errors[i] = errno;
      failed[i] = "socket";
      return;
    }
    errors[i] = DeleteLink(rtnl, names[i].data());
    CloseQuietly(rtnl);
  });
  for (uint32_t i = 0; i < length; i++) {
    if (errors[i] != 0) {
      ThrowErrno(env, failed[i], names[i].data(), errors[i]);
      return nullptr;
    }
  }
  return Undefined(env);
}

// disableTxOffloads(name): void. `ethtool -K name tx off gso off ...` on a
// device of the calling thread's namespace (see ethtool.h): its frames then
// leave segmented and checksummed in software, as a capture must see them
// to check the checksums the kernel wrote.
napi_value DisableTxOffloadsOn(napi_env env, napi_callback_info info) {
  const char* fn = "disableTxOffloads";
  Args args;
  char name[IFNAMSIZ] = {0};
  if (!GetArgs(env, info, fn, 1, &args) || !GetShortString(env, args.v[0], fn, "name", name, IFNAMSIZ - 1)) return nullptr;
  const char* failed = nullptr;
  const int err = DisableTxOffloads(name, &failed);
  if (err != 0) {
    ThrowErrno(env, failed, name, err);
    return nullptr;
  }
  return Undefined(env);
}

}  // namespace

void RegisterVeth(napi_env env, napi_value exports) {
  static const Export functions[] = {
      {"podVethOpen", PodVethOpen},
      {"linkDelete", LinkDelete},
      {"linkDeleteMany", LinkDeleteMany},
      {"disableTxOffloads", DisableTxOffloadsOn},
  };
  DefineFunctions(env, exports, functions);
}

}  // namespace vrio
