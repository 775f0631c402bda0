#!/usr/bin/env bash
# Builds the Kubernetes 1.20.2 binaries the testbed runs (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kubectl) from Debian's own
# `kubernetes` source package with Debian's golang-go, plus the pause and
# busybox images as docker-archive tarballs. Everything lands in a cache
# outside the repository and is rebuilt only when missing.
#   VROUTER_K8S_CACHE  cache directory (default /var/cache/vrouter-ts/k8s-1.20.2)
set -euo pipefail
cd "$(dirname "$0")"
cache="${VROUTER_K8S_CACHE:-/var/cache/vrouter-ts/k8s-1.20.2}"
components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
mkdir -p "$cache/bin" "$cache/images"

missing=()
for component in "${components[@]}"; do
  [ -x "$cache/bin/$component" ] || missing+=("cmd/$component")
done

if [ "${#missing[@]}" -gt 0 ] || [ ! -f "$cache/pause.c" ]; then
  bash ./setup.sh
  work="$(mktemp -d /var/tmp/vrouter-k8s-build.XXXXXX)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get source --download-only kubernetes >/dev/null)
  # The orig tarball is the full upstream tree with vendor/; Debian's patches
  # only touch packaging, so the upstream tree is built as it is.
  orig="$(ls "$work"/kubernetes_*.orig.tar.* | head -n 1)"
  mkdir "$work/src"
  tar -xf "$orig" -C "$work/src" --strip-components=1
  cp "$work/src/build/pause/linux/pause.c" "$cache/pause.c"
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "building ${missing[*]} (about 4 minutes)" >&2
    # A plain `go build -mod=vendor` fails: make runs the code generators first.
    (cd "$work/src" && GOPATH="$work/gopath" GOCACHE="$work/gocache" CGO_ENABLED=0 \
      KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean \
      nice -n 10 make WHAT="${missing[*]}")
    for component in "${missing[@]}"; do
      install -m 0755 "$work/src/_output/bin/${component#cmd/}" "$cache/bin/"
    done
  fi
fi

# Images: nothing is pulled; each is one layer written by hand in the
# docker-archive format `ctr images import` reads.
write_image() { # name tag rootfs-dir entrypoint-json
  local name="$1" tag="$2" rootfs="$3" entrypoint="$4" out="$cache/images/$1.tar"
  [ -f "$out" ] && return 0
  local dir; dir="$(mktemp -d)"
  tar -C "$rootfs" --owner=0 --group=0 --numeric-owner -cf "$dir/layer.tar" .
  local diff_id; diff_id="$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)"
  cat > "$dir/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Entrypoint":$entrypoint,"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]}}
JSON
  local config_id; config_id="$(sha256sum "$dir/config.json" | cut -d' ' -f1)"
  mv "$dir/config.json" "$dir/$config_id.json"
  cat > "$dir/manifest.json" <<JSON
[{"Config":"$config_id.json","RepoTags":["vrouter-ts.local/$name:$tag"],"Layers":["layer.tar"]}]
JSON
  tar -C "$dir" -cf "$out.tmp" manifest.json "$config_id.json" layer.tar
  mv "$out.tmp" "$out"
  rm -rf "$dir" "$rootfs"
}

if [ ! -f "$cache/images/pause.tar" ]; then
  rootfs="$(mktemp -d)"
  gcc -Os -static -o "$rootfs/pause" "$cache/pause.c"
  strip "$rootfs/pause"
  write_image pause 3.2 "$rootfs" '["/pause"]'
fi
if [ ! -f "$cache/images/busybox.tar" ]; then
  rootfs="$(mktemp -d)"
  mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
  done
  echo 'root:x:0:0:root:/:/bin/sh' > "$rootfs/etc/passwd"
  write_image busybox 1.35 "$rootfs" '["/bin/sh"]'
fi
echo "$cache"
