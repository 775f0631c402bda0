#!/usr/bin/env bash
# Installs what vrouter-ts needs on a fresh Debian machine (as root): the
# Debian packages, then the npm dependencies (which build the native addon
# and the libpcap binding from source, and compile the TypeScript).
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
# libpcap-dev: the `cap` binding builds against it. iproute2, ping, procps:
# namespaces, pods and the demo. tshark and scapy: the independent decoders of
# the fixture checks and captures; tcpdump makes the Linux cooked captures replay
# reads, libxml2-utils (xmllint) validates the JUnit report. netsniff-ng (trafgen): bench:pps and a
# rate test. chromium (fonts-liberation for its text): the web page test.
# python3-requests: the real vrouter-port-control (tf-controller) in test/port-api.
apt_packages=(libpcap-dev iproute2 iputils-ping procps tshark python3-scapy netsniff-ng chromium fonts-liberation python3-requests tcpdump libxml2-utils)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

npm ci
