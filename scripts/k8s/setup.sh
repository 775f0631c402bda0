#!/usr/bin/env bash
# Installs the Debian packages the Kubernetes testbed needs (as root): the
# runtime the kubelet drives (containerd, runc), etcd, the CNI
# loopback plugin, busybox for the test image, and what build.sh compiles the
# server binaries and the pause container with. kubectl is built by build.sh
# from the same source tree (1.20.2, the servers' version): Debian's
# kubernetes-client cannot be installed where another package (Google's
# kubectl) owns /usr/bin/kubectl, and a kubectl more than one minor version
# away from the apiserver is outside Kubernetes' version-skew policy. Only the VROUTER_K8S=1 tests
# and the k8s demo use these, so scripts/setup.sh does not install them.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
apt_packages=(etcd-server containerd runc containernetworking-plugins
  busybox-static gcc libc6-dev golang-go rsync build-essential dpkg-dev openssl)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done

# build.sh needs Debian's kubernetes source package: a deb-src entry with the
# binary entries' URIs and suites.
sources_file=/etc/apt/sources.list.d/vrouter-ts-deb-src.sources
need_update=0
if [ ! -f "$sources_file" ]; then
  sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$sources_file"
  need_update=1
fi
if [ "${#missing[@]}" -gt 0 ] || [ "$need_update" = 1 ]; then
  flock /tmp/apt.lock apt-get update -q
fi
if [ "${#missing[@]}" -gt 0 ]; then
  flock /tmp/apt.lock apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# containerd's package starts its system service; the testbed runs its own
# containerd with its own root, state and socket, so the system one stays off.
if command -v systemctl >/dev/null && systemctl is-active -q containerd 2>/dev/null; then
  systemctl disable --now containerd || true
fi
