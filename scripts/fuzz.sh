#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, AddressSanitizer + UBSan) and runs each for SECONDS seconds
# (first argument, default 30) from a copy of its committed seed corpus (fuzz/corpus/<target>/).
# A crash, an uncaught exception, a leak, an input that takes over 10 s or an allocation over
# 1 GiB fails the run; the input is left in <build>/findings/<target>/ (replay:
# <build>/fuzz/fuzz_<target> FILE). The build tree is build-fuzz/ (RelWithDebInfo), or the second
# argument: a tree already configured with TWOTOWER_FUZZ=ON, such as scripts/test_sanitized.sh's
# build-asan/ (CI: `fuzz.sh 10 build-asan`, so the library is compiled once for both).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
build="${2:-build-fuzz}"
bash scripts/install_deps.sh --fuzz
if [ -z "${2:-}" ]; then
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_UNITY_BUILD=ON -DTWOTOWER_FUZZ=ON -DTWOTOWER_BUILD_TESTS=OFF \
    -DTWOTOWER_BUILD_BENCHMARKS=OFF -DTWOTOWER_BUILD_EXAMPLES=OFF >/dev/null
elif ! grep -q '^TWOTOWER_FUZZ:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  echo "fuzz.sh: $build is not a build tree configured with -DTWOTOWER_FUZZ=ON" >&2
  exit 2
fi
targets=(csv config model npy ids index parquet)
# Only the fuzz targets (and the library they link), not the command-line binary.
cmake --build "$build" --target "${targets[@]/#/fuzz_}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$PWD/tests/ubsan.supp"
export ASAN_OPTIONS="detect_leaks=1"
export OMP_NUM_THREADS=1
failed=0
for target in "${targets[@]}"; do
  work="$build/corpus/$target"
  findings="$build/findings/$target"
  rm -rf "$work" "$findings"
  mkdir -p "$work" "$findings"
  cp fuzz/corpus/"$target"/* "$work"/
  echo "== fuzz_$target: ${seconds}s from $(ls "$work" | wc -l) seeds"
  if ! "$build"/fuzz/fuzz_"$target" "$work" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -artifact_prefix="$findings/" \
    -print_final_stats=1 >"$build/fuzz_$target.log" 2>&1; then
    echo "fuzz_$target FAILED (input in $findings/):"
    grep -E "ERROR|SUMMARY|runtime error|Test unit written|terminate" "$build/fuzz_$target.log" |
      head -20 || true
    failed=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$build/fuzz_$target.log" | tail -2 |
      tr '\n' ' ' || true
    echo
  fi
done
exit "$failed"
