#!/usr/bin/env bash
# Builds twotower with its tests and the Python module, and runs them all (ctest, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh -DTWOTOWER_BUILD_TESTS=ON -DTWOTOWER_BUILD_PYTHON=ON
ctest --test-dir build --output-on-failure -j 2
# The Python module (python/tests), with Debian's Python (the default python3 may be another).
PYTHONPATH=build/python TWOTOWER_CLI=build/twotower /usr/bin/python3 -m pytest -p no:cacheprovider python/tests -q
