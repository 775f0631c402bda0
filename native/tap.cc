// tap.cc: TAP devices (/dev/net/tun, IFF_TAP | IFF_NO_PI): tapOpen;
// podTapOpen, a pod's TAP made and configured inside its network namespace
// (the configuration itself is rtnetlink, in netlink.cc), persistent so that
// it outlives a daemon restart, and re-attached by the next daemon; and
// tapRelease, which ends that persistence when the port is deleted.
#include "common.h"
#include "netlink.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>

namespace vrio {
namespace {

// Opens /dev/net/tun and attaches it to the TAP device named in ifr (created
// in the calling thread's network namespace when it does not exist). Returns
// the fd, or -1 with errno set and *syscall naming the failed call.
int OpenTap(struct ifreq* ifr, const char** syscall) {
  const int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *syscall = "open";
    return -1;
  }
  if (ioctl(fd, TUNSETIFF, ifr) != 0) {
    const int err = errno;
    CloseQuietly(fd);
    errno = err;
    *syscall = "TUNSETIFF";
    return -1;
  }
  return fd;
}

// { fd, name } for JS; name is what the kernel wrote back into ifr.
napi_value TapHandle(napi_env env, int fd, const struct ifreq& ifr) {
  char actual[IFNAMSIZ + 1] = {0};
  memcpy(actual, ifr.ifr_name, IFNAMSIZ);
  napi_value result = nullptr, fd_value = nullptr, name_value = nullptr;
  napi_create_object(env, &result);
  napi_create_int32(env, fd, &fd_value);
  napi_create_string_utf8(env, actual, NAPI_AUTO_LENGTH, &name_value);
  napi_set_named_property(env, result, "fd", fd_value);
  napi_set_named_property(env, result, "name", name_value);
  return result;
}

// tapOpen(name: string): { fd: number, name: string }
// Creates the TAP device `name` or attaches to an existing one of that name
// (an empty name lets the kernel pick tapN). IFF_NO_PI: each read/write is
// exactly one Ethernet frame, no 4-byte packet-info prefix. The device is not
// made persistent: it disappears when the last fd on it is closed.
napi_value TapOpen(napi_env env, napi_callback_info info) {
  const char* fn = "tapOpen";
  Args args;
  if (!GetArgs(env, info, fn, 1, &args)) return nullptr;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  if (!GetShortString(env, args.v[0], fn, "interface name", ifr.ifr_name, IFNAMSIZ - 1)) return nullptr;
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  const char* syscall = nullptr;
  const int fd = OpenTap(&ifr, &syscall);
  if (fd < 0) {
    const int err = errno;
    const char* what = strcmp(syscall, "open") == 0 ? "/dev/net/tun" : ifr.ifr_name[0] != 0 ? ifr.ifr_name : "(any)";
    ThrowErrno(env, syscall, what, err);
    return nullptr;
  }
  return TapHandle(env, fd, ifr);
}

// Creates the TAP in the calling thread's namespace (the pod's) and
// configures it as the kubelet plugin did: MAC, MTU, up; ip/32; the gateway
// on the link and the default route via it. Returns the TAP fd, or -1 with
// *failed naming the step and *err its errno (the device is gone then).
int MakePodInterface(PodInterface* pod, const char** failed, int* err) {
  const char* syscall = nullptr;
  const int tap = OpenTap(&pod->ifr, &syscall);
  if (tap < 0) {
    *err = errno;
    *failed = syscall;
    return -1;
  }
  const int index = static_cast<int>(if_nametoindex(pod->ifr.ifr_name));
  const int rtnl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (index == 0 || rtnl < 0) {
    *err = errno;
    *failed = index == 0 ? "if_nametoindex" : "socket(NETLINK_ROUTE)";
    if (rtnl >= 0) CloseQuietly(rtnl);
    CloseQuietly(tap);
    return -1;
  }
  *err = ConfigurePodInterface(rtnl, index, *pod, failed);
  CloseQuietly(rtnl);
  // Persistent only once configured: a failed add leaves no device behind.
  if (*err == 0 && ioctl(tap, TUNSETPERSIST, 1) != 0) {
    *err = errno;
    *failed = "TUNSETPERSIST";
  }
  if (*err != 0) {
    CloseQuietly(tap);
    return -1;
  }
  return tap;
}

// Attaches to the pod's TAP a previous daemon left (persistent, configured,
// with the pod's addresses and routes on it). Returns the fd, -1 with errno
// ENODEV when there is no such device (TUNSETIFF would create one), or -1
// with errno from TUNSETIFF (EINVAL: a device of that name but not a TAP).
int ReattachPodInterface(PodInterface* pod, const char** failed, int* err) {
  if (if_nametoindex(pod->ifr.ifr_name) == 0) {
    *err = ENODEV;
    *failed = "if_nametoindex";
    return -1;
  }
  const int tap = OpenTap(&pod->ifr, failed);
  if (tap < 0) *err = errno;
  return tap;
}

// podTapOpen({ netnsPath, ifname, mac, mtu, ip, gateway, reattach? }):
// { fd, name, reattached }
// A pod's interface, made where it belongs: the calling thread enters the
// pod's network namespace (netnsPath, e.g. /run/netns/<pod>; setns affects
// this thread only), creates the TAP there under the pod's name, configures
// it over rtnetlink, makes it persistent and comes back. With reattach (a
// restarted daemon), a TAP of that name already there is attached as it is:
// the pod kept its interface, addresses and routes while no daemon ran. The TAP fd keeps working from the
// vrouter's namespace. Creating it here and moving it (`ip link set netns`)
// costs the kernel tens of milliseconds per device, and an `ip` process per
// step costs milliseconds more: a port add is on the path to the pod's first
// packet. Errors name the step, the device and the namespace; on any error
// the device is gone.
napi_value PodTapOpen(napi_env env, napi_callback_info info) {
  const char* fn = "podTapOpen";
  Args args;
  PodInterface pod;
  if (!GetArgs(env, info, fn, 1, &args) || !GetPodInterface(env, args.v[0], fn, &pod)) return nullptr;
  pod.ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  bool reattach = false;
  napi_value reattach_value = nullptr;
  napi_valuetype reattach_type = napi_undefined;
  napi_get_named_property(env, args.v[0], "reattach", &reattach_value);
  napi_typeof(env, reattach_value, &reattach_type);
  if (reattach_type == napi_boolean) napi_get_value_bool(env, reattach_value, &reattach);
  PodNamespace netns;
  if (!netns.Enter(env, pod.netns_path)) return nullptr;
  const char* failed = nullptr;
  int err = 0;
  int tap = reattach ? ReattachPodInterface(&pod, &failed, &err) : -1;
  const bool reattached = tap >= 0;
  if (!reattached && (!reattach || err == ENODEV)) tap = MakePodInterface(&pod, &failed, &err);
  netns.Leave();
  if (tap < 0) {
    char what[IFNAMSIZ + sizeof pod.netns_path + 8];
    snprintf(what, sizeof what, "%s in %s", pod.ifr.ifr_name, pod.netns_path);
    ThrowErrno(env, failed, strcmp(failed, "open") == 0 ? "/dev/net/tun" : what, err);
    return nullptr;
  }
  napi_value handle = TapHandle(env, tap, pod.ifr), reattached_value = nullptr;
  napi_get_boolean(env, reattached, &reattached_value);
  napi_set_named_property(env, handle, "reattached", reattached_value);
  return handle;
}

// tapRelease(fd): the TAP stops being persistent, so it goes away with the
// fd (closed by the caller): a deleted port takes its pod's TAP along.
napi_value TapRelease(napi_env env, napi_callback_info info) {
  const char* fn = "tapRelease";
  Args args;
  int64_t fd = 0;
  if (!GetArgs(env, info, fn, 1, &args) || !GetInteger(env, args.v[0], fn, "fd", 0, INT32_MAX, &fd)) return nullptr;
  if (ioctl(static_cast<int>(fd), TUNSETPERSIST, 0) != 0) ThrowErrno(env, "TUNSETPERSIST", "tap", errno);
  return nullptr;
}


}  // namespace

void RegisterTap(napi_env env, napi_value exports) {
  static const Export functions[] = {
      {"tapOpen", TapOpen},
      {"podTapOpen", PodTapOpen},
      {"tapRelease", TapRelease},
  };
  DefineFunctions(env, exports, functions);
}

}  // namespace vrio
