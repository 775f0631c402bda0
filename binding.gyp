{
  # Built by `npm ci` / `npm install` through the package's "install" script
  # (node-gyp rebuild) against the Node headers npm is configured with.
  # Output: build/Release/vrouter_io.node, loaded by src/dataplane/io/native.ts.
  "targets": [
    {
      "target_name": "vrouter_io",
      "sources": [
        "native/addon.cc", "native/fds.cc", "native/tap.cc", "native/netlink.cc",
        "native/io_uring.cc", "native/sockets.cc", "native/veth.cc", "native/ethtool.cc",
        "native/bpf.cc", "native/xsk.cc", "native/packet_ring.cc", "native/generator.cc"
      ],
      "defines": ["NAPI_VERSION=8"],
      # common.gypi asks for gnu++17 and -O3; we want plain C++17 and -O2
      # (cflags_cc comes after cflags on the command line, so these win).
      "cflags_cc!": ["-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "conditions": [
        ["OS!='linux'", {
          "type": "none"
        }]
      ]
    }
  ]
}
