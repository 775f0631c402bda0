#!/usr/bin/env bash
# Starts a real Kubernetes 1.20.2 node (etcd, apiserver, controller-manager,
# scheduler, containerd + runc, kubelet) in a network namespace of its own,
# with vrouter-cni as its CNI plugin, and stays in the foreground.
#   --standin   serve the stand-in agent (replayed OpenContrail agent answers)
#               on the node's 127.0.0.1:9091 until the real agent does
# Builds what is missing first. Stop with scripts/k8s/stop.sh (graceful) or
# Ctrl-C (everything killed); both remove all the testbed made.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/k8s/build.sh >/dev/null
[ -f dist/test/support/k8s-testbed.js ] || npx tsc -p .
exec node dist/test/support/k8s-testbed.js "$@"
