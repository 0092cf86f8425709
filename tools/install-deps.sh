#!/usr/bin/env bash
# Installs what outpost needs to build, test and run its demo on Debian 12 (bookworm).
# Idempotent: does nothing when everything is already installed. Needs root (or sudo).
# Also installs aedes (npm) for the broker contract tests when Node >= 20 is there (see below).
set -euo pipefail

packages=(
  build-essential meson ninja-build pkg-config cmake python3
  libssl-dev openssl libsqlite3-dev sqlite3 libsqlitecpp-dev
  libpaho-mqtt-dev libpaho-mqttpp-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev mosquitto mosquitto-clients
  iproute2 iptables
  rabbitmq-server
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  $sudo apt-get update -q

  # rabbitmq-server would start as a system service on installation, holding 4369 (epmd), 5672
  # and 25672 on every interface and ~100 MB for nothing: the tests start their own nodes
  # (tools/testkit/rabbitmq.hpp: own ports and epmd, so they would not clash, but the CI machine
  # has no memory or CPU to spare). A policy-rc.d that denies every start keeps both invoke-rc.d
  # and deb-systemd-invoke from starting it; ours is removed afterwards (an existing one is left
  # alone). Systemd would still start it at the next boot: disable it there (only when this script
  # installed it, never a broker that was there before).
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    own_policy=1
  fi
  status=0
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    status=$?
  if [ -n "$own_policy" ]; then
    $sudo rm -f "$policy"
  fi
  if [ "$status" -ne 0 ]; then
    exit "$status"
  fi
  if [[ " ${missing[*]} " == *" rabbitmq-server "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now rabbitmq-server.service >/dev/null 2>&1 || true
  fi
fi

# aedes, the second broker of the broker contract suite (tests/integration/broker_contract_test.cpp),
# from npm into a fixed directory outside the clone, where tools/testkit/meson.build looks for it.
# aedes 1.2.0 needs Node >= 20, which Debian 12 does not package (its nodejs is 18): without it
# this step only says so, and meson builds the suite without the aedes side (with a warning).
# Node 20 comes from NodeSource or nvm, outside this script: it does not add package sources.
aedes_dir=/usr/local/lib/outpost-test-brokers
aedes_version=1.2.0
installed=$(node -p "require('$aedes_dir/node_modules/aedes/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$aedes_version" ]; then
  node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null; then
    echo "install-deps: aedes $aedes_version needs Node >= 20 and npm ($(node --version 2>/dev/null ||
      echo 'no node') here): not installed, the aedes contract tests will not be built" >&2
  else
    echo "install-deps: installing aedes@$aedes_version into $aedes_dir" >&2
    $sudo npm install --prefix "$aedes_dir" --no-audit --no-fund --save-exact "aedes@$aedes_version" >&2
  fi
fi
