#!/usr/bin/env bash
# Installs the Debian packages named as arguments that are not installed yet (the benchmarks'
# peers: numpy, PyTorch, FAISS, hnswlib, ...); sudo when not root. Nothing to do, nothing printed.
#   bash bench/install_missing.sh python3-numpy python3-torch
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
