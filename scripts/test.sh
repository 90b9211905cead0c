#!/usr/bin/env bash
# Builds twotower with its tests and the Python module, and runs them all (ctest, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
# TWOTOWER_UNITY_BUILD=ON (.ci/run sets it): the library in unity batches, a faster clean build;
# off by default, where one object per file makes a developer's rebuild after an edit faster.
bash scripts/build.sh -DTWOTOWER_BUILD_TESTS=ON -DTWOTOWER_BUILD_PYTHON=ON \
  -DCMAKE_UNITY_BUILD="${TWOTOWER_UNITY_BUILD:-OFF}"
ctest --test-dir build --output-on-failure -j 2
# The Python module (python/tests), with Debian's Python (the default python3 may be another).
PYTHONPATH=build/python TWOTOWER_CLI=build/twotower /usr/bin/python3 -m pytest -p no:cacheprovider python/tests -q
