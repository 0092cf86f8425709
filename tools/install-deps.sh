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
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
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
