#!/usr/bin/env bash
# Builds twotower and its tests with AddressSanitizer and UndefinedBehaviorSanitizer (Debug, into
# build-asan/) and runs the whole suite; any sanitizer report fails the run. CI runs it after
# scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
# Unity batches for the library and the command (CMakeLists.txt): about half the build time of
# one object per file on CI's 2 cores; the tests stay one object per file.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTWOTOWER_SANITIZE=ON -DCMAKE_UNITY_BUILD=ON \
  -DTWOTOWER_BUILD_TESTS=ON -DTWOTOWER_BUILD_BENCHMARKS=OFF -DTWOTOWER_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-asan
# UBSan reports are errors, not warnings (tests/ubsan.supp: one third-party report, explained
# there); ASan's leak checker stays on.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$PWD/tests/ubsan.supp"
export ASAN_OPTIONS=detect_leaks=1
# The Parquet interop test leaves its 120 MB multi-page file to the Release run (scripts/test.sh).
export INTEROP_LARGE=0
ctest --test-dir build-asan --output-on-failure -j 2
