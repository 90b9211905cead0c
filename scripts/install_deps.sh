#!/usr/bin/env bash
# Installs the Debian 12 packages twotower builds with, if any is missing.
set -euo pipefail
packages=(cmake ninja-build g++ pkg-config libeigen3-dev libyaml-cpp-dev nlohmann-json3-dev
  libcli11-dev libgtest-dev libgmock-dev libhnswlib-dev libssl-dev
  libcpp-httplib-dev libboost-math-dev libboost-dev
  libthrift-dev thrift-compiler libsnappy-dev libzstd-dev zlib1g-dev
  libopenmpi-dev openmpi-bin libdnnl-dev qemu-user
  pybind11-dev python3-dev python3-numpy python3-pytest python3-pandas python3-venv python3-tqdm)
# --fuzz: also what scripts/fuzz.sh needs (clang with libFuzzer and its OpenMP runtime).
if [ "${1:-}" = "--fuzz" ]; then
  packages+=(clang libclang-rt-14-dev libomp-14-dev)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
