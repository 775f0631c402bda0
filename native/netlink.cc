// netlink.cc: see netlink.h.
#include "netlink.h"

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>

namespace vrio {

// Sends the request on a NETLINK_ROUTE socket and reads the kernel's
// acknowledgement. Returns 0, or the errno the kernel (or a syscall) gave.
int NetlinkTalk(int socket_fd, NetlinkRequest* request, NetlinkReply on_reply, void* context) {
  if (request->overflowed) return EMSGSIZE;
  struct nlmsghdr* h = request->header();
  if (send(socket_fd, h, h->nlmsg_len, 0) < 0) return errno;
  alignas(NLMSG_ALIGNTO) char answer[8192];
  for (;;) {
    ssize_t received = recv(socket_fd, answer, sizeof answer, 0);
    if (received < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    size_t left = static_cast<size_t>(received);
    for (struct nlmsghdr* reply = reinterpret_cast<struct nlmsghdr*>(answer); NLMSG_OK(reply, left);
         reply = NLMSG_NEXT(reply, left)) {
      if (reply->nlmsg_type == NLMSG_ERROR) return -static_cast<struct nlmsgerr*>(NLMSG_DATA(reply))->error;
      if (on_reply != nullptr) on_reply(reply, context);
    }
  }
}

// Adds a main-table IPv4 route out of interface `index`: a /32 to `address`
// (attribute RTA_DST) or the default route via it (RTA_GATEWAY), as
// `ip route add` does (protocol boot). Returns 0 or the errno.
int AddRoute(int rtnl, NetlinkRequest* request, uint8_t dst_len, uint8_t scope, uint16_t attribute, struct in_addr address,
             int index) {
  struct rtmsg route = {};
  route.rtm_family = AF_INET;
  route.rtm_dst_len = dst_len;
  route.rtm_table = RT_TABLE_MAIN;
  route.rtm_protocol = RTPROT_BOOT;
  route.rtm_scope = scope;
  route.rtm_type = RTN_UNICAST;
  request->Begin(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &route, sizeof route);
  request->Attribute(attribute, &address, sizeof address);
  request->Attribute(RTA_OIF, &index, sizeof index);
  return NetlinkTalk(rtnl, request);
}

namespace {

bool GetPodString(napi_env env, napi_value object, const char* fn, const char* name, char* out, size_t max_length) {
  napi_value value = nullptr;
  napi_get_named_property(env, object, name, &value);
  return GetShortString(env, value, fn, name, out, max_length);
}

bool GetPodIpv4(napi_env env, napi_value object, const char* fn, const char* name, struct in_addr* out) {
  char text[16] = {0};
  if (!GetPodString(env, object, fn, name, text, sizeof text - 1)) return false;
  if (inet_pton(AF_INET, text, out) == 1) return true;
  char message[96];
  snprintf(message, sizeof message, "%s: %s is not an IPv4 address: '%s'", fn, name, text);
  ThrowRange(env, message);
  return false;
}

}  // namespace

bool GetPodInterface(napi_env env, napi_value object, const char* fn, PodInterface* pod) {
  memset(pod, 0, sizeof *pod);
  char mac[18] = {0};
  if (!GetPodString(env, object, fn, "netnsPath", pod->netns_path, sizeof pod->netns_path - 1) ||
      !GetPodString(env, object, fn, "ifname", pod->ifr.ifr_name, IFNAMSIZ - 1) ||
      !GetPodString(env, object, fn, "mac", mac, sizeof mac - 1) || !GetPodIpv4(env, object, fn, "ip", &pod->ip) ||
      !GetPodIpv4(env, object, fn, "gateway", &pod->gateway)) {
    return false;
  }
  unsigned octets[6];
  char end = 0;
  if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &octets[0], &octets[1], &octets[2], &octets[3], &octets[4], &octets[5],
             &end) != 6 ||
      strlen(mac) != 17) {
    char message[96];
    snprintf(message, sizeof message, "%s: mac is not a MAC address: '%s'", fn, mac);
    ThrowRange(env, message);
    return false;
  }
  for (int i = 0; i < 6; i++) pod->mac[i] = static_cast<uint8_t>(octets[i]);
  napi_value mtu = nullptr;
  int64_t value = 0;
  napi_get_named_property(env, object, "mtu", &mtu);
  if (!GetInteger(env, mtu, fn, "mtu", 68, 65535, &value)) return false;
  pod->mtu = static_cast<uint32_t>(value);
  return true;
}

// Configures the pod's interface (index `index`, in the calling thread's
// namespace) as the kubelet plugin did: MAC, MTU, up; ip/32; the gateway on
// the link and the default route via it. Returns 0, or the errno with
// *failed naming the step.
int ConfigurePodInterface(int rtnl, int index, const PodInterface& pod, const char** failed) {
  int err = 0;
  NetlinkRequest request;
  // Flags last in the kernel's order: the MAC and MTU are set, then the link goes up.
  struct ifinfomsg link = {};
  link.ifi_family = AF_UNSPEC;
  link.ifi_index = index;
  link.ifi_flags = IFF_UP;
  link.ifi_change = IFF_UP;
  request.Begin(RTM_NEWLINK, 0, &link, sizeof link);
  request.Attribute(IFLA_ADDRESS, pod.mac, sizeof pod.mac);
  request.Attribute(IFLA_MTU, &pod.mtu, sizeof pod.mtu);
  err = NetlinkTalk(rtnl, &request);
  *failed = "RTM_NEWLINK (MAC, MTU, up)";
  if (err == 0) {
    struct ifaddrmsg address = {};
    address.ifa_family = AF_INET;
    address.ifa_prefixlen = 32;
    address.ifa_scope = RT_SCOPE_UNIVERSE;
    address.ifa_index = index;
    request.Begin(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &address, sizeof address);
    request.Attribute(IFA_LOCAL, &pod.ip, sizeof pod.ip);
    request.Attribute(IFA_ADDRESS, &pod.ip, sizeof pod.ip);
    err = NetlinkTalk(rtnl, &request);
    *failed = "RTM_NEWADDR (ip/32)";
  }
  if (err == 0) {
    err = AddRoute(rtnl, &request, 32, RT_SCOPE_LINK, RTA_DST, pod.gateway, index);
    *failed = "RTM_NEWROUTE (gateway on the link)";
  }
  if (err == 0) {
    err = AddRoute(rtnl, &request, 0, RT_SCOPE_UNIVERSE, RTA_GATEWAY, pod.gateway, index);
    *failed = "RTM_NEWROUTE (default via the gateway)";
  }
  return err;
}

bool PodNamespace::Enter(napi_env env, const char* path) {
  home_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home_ < 0) {
    ThrowErrno(env, "open", "/proc/thread-self/ns/net", errno);
    return false;
  }
  target_ = open(path, O_RDONLY | O_CLOEXEC);
  if (target_ < 0 || setns(target_, CLONE_NEWNET) != 0) {
    const int err = errno;
    const bool opened = target_ >= 0;
    Close();
    ThrowErrno(env, opened ? "setns" : "open", path, err);
    return false;
  }
  return true;
}

void PodNamespace::Leave() {
  if (home_ < 0) return;
  // Back home before anything else runs on this thread: every socket the
  // worker opens later must be in the vrouter's own namespace.
  if (setns(home_, CLONE_NEWNET) != 0) {
    fprintf(stderr, "vrouter_io: setns back to the vrouter's network namespace failed: %s\n", strerror(errno));
    abort();
  }
  Close();
}

void PodNamespace::Close() {
  if (target_ >= 0) CloseQuietly(target_);
  if (home_ >= 0) CloseQuietly(home_);
  target_ = home_ = -1;
}

}  // namespace vrio
