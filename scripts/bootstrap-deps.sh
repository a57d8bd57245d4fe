#!/usr/bin/env bash
# Installs the Debian 12 packages switchyard needs to build and test, only if any are missing.
# Idempotent and quiet when everything is present. Needs root (or sudo) only when installing.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config ccache
  libboost1.81-dev libboost-url1.81-dev libboost-json1.81-dev
  libsimdjson-dev librocksdb-dev libssl-dev prometheus-cpp-dev libyaml-cpp-dev
  libre2-dev liblz4-dev libsystemd-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
  libjemalloc-dev   # the daemon's allocator (CMakeLists.txt says why)
  curl python3
  prometheus python3-yaml   # promtool and PyYAML for the checks in tests/deploy/
)
if [[ "${SWITCHYARD_BENCH_DEPS:-0}" == 1 ]]; then
  PKGS+=(nginx-light wrk python3-flask gunicorn webhook)
fi
if [[ "${SWITCHYARD_FUZZ_DEPS:-0}" == 1 ]]; then
  PKGS+=(clang-14 clang libclang-rt-14-dev)  # libFuzzer and the sanitizer runtimes
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "bootstrap: installing missing Debian packages: ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "bootstrap: need root or sudo to install: ${missing[*]}" >&2; exit 2; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
