#!/usr/bin/env bash
# kubectl against the node of scripts/k8s/start.sh (its apiserver listens in the node's namespace).
set -euo pipefail
current=/run/vrouter-ts/k8s-testbed.json
[ -f "$current" ] || { echo "no testbed running: bash scripts/k8s/start.sh" >&2; exit 1; }
mapfile -t command < <(node -e "for (const a of require('$current').kubectl) console.log(a)")
exec "${command[@]}" "$@"
