#!/usr/bin/env bash
# Installs what outpost needs to build, test and run its demo on Debian 12 (bookworm).
# Idempotent: does nothing when everything is already installed. Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential meson ninja-build pkg-config cmake python3
  libssl-dev openssl libsqlite3-dev sqlite3 libsqlitecpp-dev
  libpaho-mqtt-dev libpaho-mqttpp-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev mosquitto mosquitto-clients
  iproute2 iptables
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
