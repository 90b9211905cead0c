#!/usr/bin/env bash
# Builds twotower with its tests and runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh -DTWOTOWER_BUILD_TESTS=ON
ctest --test-dir build --output-on-failure -j 2
