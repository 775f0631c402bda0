#!/usr/bin/env bash
# The main job on a fresh machine (as root): install what is needed, then
# run the demo (two nodes, a control node, four pods, a ClusterIP, traffic).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run demo
