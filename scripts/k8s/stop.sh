#!/usr/bin/env bash
# Stops the node of scripts/k8s/start.sh gracefully: pods deleted while the
# kubelet runs (so their CNI DEL happens), then every component, then the
# cleanup. Waits until it has exited.
set -euo pipefail
current=/run/vrouter-ts/k8s-testbed.json
if [ ! -f "$current" ]; then echo "no testbed running ($current missing)" >&2; exit 0; fi
pid="$(node -p "require('$current').pid")"
kill -USR2 "$pid"
for _ in $(seq 1 180); do
  kill -0 "$pid" 2>/dev/null || exit 0
  sleep 0.5
done
echo "testbed $pid did not stop in 90 s; sending SIGTERM" >&2
kill -TERM "$pid"
