#!/usr/bin/env bash
# Configures and builds twotower (Release) into build/. Extra arguments go to cmake, after the
# defaults (so -DTWOTOWER_NATIVE=ON among them gives a build for this machine's CPU alone; the
# default is the portable one even in a build/ configured natively before).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTWOTOWER_NATIVE=OFF "$@" >/dev/null
cmake --build build
