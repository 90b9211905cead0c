#!/usr/bin/env bash
# Builds twotower, its tests and the libFuzzer targets once, with clang, AddressSanitizer and UBSan
# (into build-asan/), and runs the whole suite; any sanitizer report fails the run. scripts/fuzz.sh
# then runs the fuzz targets of the same tree. CI runs both after scripts/test.sh.
#
# Why one tree at -O1: CI builds the product three times (Release, sanitized, fuzz) on two cores;
# the sanitized suite and the fuzz targets need the same instrumentation, so one build serves both,
# and -O1 (ASan's recommended level) runs the suite several times faster than -O0 while keeping
# assertions (Debug: no NDEBUG) and the stack traces readable.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh --fuzz
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" -DTWOTOWER_SANITIZE=ON -DTWOTOWER_FUZZ=ON \
  -DTWOTOWER_BUILD_TESTS=ON -DTWOTOWER_BUILD_BENCHMARKS=OFF -DTWOTOWER_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-asan
if [ "${1:-}" = "--build-only" ]; then exit 0; fi
# UBSan reports are errors, not warnings (tests/ubsan.supp: one third-party report, explained
# there); ASan's leak checker stays on.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$PWD/tests/ubsan.supp"
export ASAN_OPTIONS=detect_leaks=1
# The Parquet interop test leaves its 120 MB multi-page file to the Release run (scripts/test.sh).
export INTEROP_LARGE=0
ctest --test-dir build-asan --output-on-failure -j 2
