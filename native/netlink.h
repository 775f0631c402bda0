// netlink.h: rtnetlink (NETLINK_ROUTE) and generic netlink requests, and the
// configuration of a pod's interface in its namespace, shared by the TAP
// and veth ports. Why netlink and not `ip`: a process per step costs
// milliseconds, and a port add is on the path to the pod's first packet.
#pragma once

#include "common.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>

namespace vrio {

// What podTapOpen sets up, read from its JS object argument.
struct PodInterface {
  char netns_path[256];
  struct ifreq ifr;  // ifr_name: the device's name in the pod (eth0)
  uint8_t mac[6];
  uint32_t mtu;
  struct in_addr ip;
  struct in_addr gateway;
};

// One netlink request under construction: header, fixed part (ifinfomsg,
// genlmsghdr, ...), attributes, nests. Attributes that would not fit are
// not written and mark the request overflowed (NetlinkTalk then fails with
// EMSGSIZE): the buffer holds every request this addon makes with room.
struct NetlinkRequest {
  alignas(NLMSG_ALIGNTO) char buffer[1024];
  bool overflowed = false;
  struct nlmsghdr* header() { return reinterpret_cast<struct nlmsghdr*>(buffer); }

  // Starts a request of `type` whose fixed part (ifinfomsg, ifaddrmsg, rtmsg) is `body`.
  void Begin(uint16_t type, uint16_t flags, const void* body, size_t body_length) {
    memset(buffer, 0, sizeof buffer);
    overflowed = false;
    struct nlmsghdr* h = header();
    h->nlmsg_len = NLMSG_LENGTH(body_length);
    h->nlmsg_type = type;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    memcpy(NLMSG_DATA(h), body, body_length);
  }

  void Attribute(uint16_t type, const void* data, size_t length) {
    struct nlmsghdr* h = header();
    if (NLMSG_ALIGN(h->nlmsg_len) + RTA_SPACE(length) > sizeof buffer) {
      overflowed = true;
      return;
    }
    struct rtattr* attribute = reinterpret_cast<struct rtattr*>(buffer + NLMSG_ALIGN(h->nlmsg_len));
    attribute->rta_type = type;
    attribute->rta_len = RTA_LENGTH(length);
    memcpy(RTA_DATA(attribute), data, length);
    h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(attribute->rta_len);
  }

  void String(uint16_t type, const char* text) { Attribute(type, text, strlen(text) + 1); }

  // A fixed part inside a nest (VETH_INFO_PEER carries an ifinfomsg first).
  void Append(const void* data, size_t length) {
    struct nlmsghdr* h = header();
    if (NLMSG_ALIGN(h->nlmsg_len) + NLMSG_ALIGN(length) > sizeof buffer) {
      overflowed = true;
      return;
    }
    memcpy(buffer + NLMSG_ALIGN(h->nlmsg_len), data, length);
    h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + NLMSG_ALIGN(length);
  }

  // Opens a nested attribute; End(the returned offset) closes it.
  size_t Nest(uint16_t type) {
    const size_t at = NLMSG_ALIGN(header()->nlmsg_len);
    Attribute(type, nullptr, 0);
    return at;
  }
  void End(size_t at) {
    if (overflowed) return;
    reinterpret_cast<struct rtattr*>(buffer + at)->rta_len = static_cast<unsigned short>(header()->nlmsg_len - at);
  }
};

// Sends the request on a netlink socket and reads the kernel's
// acknowledgement. Returns 0, or the errno the kernel (or a syscall) gave.
// `on_reply` (optional) sees each message the kernel answers with before the
// acknowledgement (the reply of a GET request).
using NetlinkReply = void (*)(const struct nlmsghdr* reply, void* context);
int NetlinkTalk(int socket_fd, NetlinkRequest* request, NetlinkReply on_reply = nullptr, void* context = nullptr);

// Adds a main-table IPv4 route out of interface `index` (see netlink.cc).
int AddRoute(int rtnl, NetlinkRequest* request, uint8_t dst_len, uint8_t scope, uint16_t attribute, struct in_addr address,
             int index);

// Reads { netnsPath, ifname, mac, mtu, ip, gateway } into *pod.
bool GetPodInterface(napi_env env, napi_value object, const char* fn, PodInterface* pod);

// Configures a pod's interface in the calling thread's namespace: MAC, MTU,
// up, ip/32, the gateway on the link, the default route via it. Returns 0,
// or the errno with *failed naming the step.
int ConfigurePodInterface(int rtnl, int index, const PodInterface& pod, const char** failed);

// The calling thread inside a pod's network namespace for a while (setns
// affects this thread only). Leave (also run by the destructor) comes back
// and aborts the process if it cannot: a worker left in a pod's namespace
// would open every later socket there.
class PodNamespace {
 public:
  PodNamespace() = default;
  PodNamespace(const PodNamespace&) = delete;
  PodNamespace& operator=(const PodNamespace&) = delete;
  ~PodNamespace() { Leave(); }
  // Enters the namespace file `path`; false after throwing.
  bool Enter(napi_env env, const char* path);
  void Leave();

 private:
  void Close();
  int home_ = -1;
  int target_ = -1;
};

}  // namespace vrio
