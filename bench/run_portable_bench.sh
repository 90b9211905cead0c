#!/usr/bin/env bash
# What the portable build costs (issue 28: "the binary still runs on an AVX2-only machine"):
# the default build (TWOTOWER_NATIVE=OFF: -march=x86-64-v3, the index kernels' AVX-512 levels
# picked at run time, training products in oneDNN's sgemm, which picks its kernels at run time)
# against a native build of the same source (-march=native, build-native/), on this machine:
#  - the training products, GFLOP/s (bench_bf16_products, one thread): Eigen's product as each
#    build compiles it, and oneDNN's sgemm;
#  - the lab's 30 epochs, whole training time, threads 1 and 2, medians of ROUNDS alternating
#    runs;
#  - the flat index at N x 128 clustered unit vectors, 2 threads, fp32 / int8 / bf16 storage:
#    queries/s at batch 1 (SINGLE queries one at a time) and batch QUERIES, medians of ROUNDS
#    alternating runs; the portable build also with TWOTOWER_MAX_CPU_ISA=build (its own AVX2
#    kernels, what it would run without the run-time choice).
# Prints a markdown table; JSON lines in $OUT/results.jsonl.
#
#   bash bench/run_portable_bench.sh               # N=1,000,000 (about 15 minutes)
#   N=100000 ROUNDS=3 bash bench/run_portable_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
QUERIES=${QUERIES:-1000}
SINGLE=${SINGLE:-300}
ROUNDS=${ROUNDS:-5}
OUT=${OUT:-build/portable_bench}
PY=/usr/bin/python3

bash scripts/build.sh -DTWOTOWER_NATIVE=OFF -DTWOTOWER_BUILD_BENCHMARKS=ON
cmake -S . -B build-native -G Ninja -DCMAKE_BUILD_TYPE=Release -DTWOTOWER_NATIVE=ON \
  -DTWOTOWER_BUILD_TESTS=OFF -DTWOTOWER_BUILD_BENCHMARKS=ON -DTWOTOWER_BUILD_EXAMPLES=OFF \
  -DCMAKE_UNITY_BUILD=ON >/dev/null
cmake --build build-native --target twotower_cli bench_index bench_bf16_products >/dev/null
mkdir -p "$OUT/data"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
log() { echo "== $*" >&2; }
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

for b in build build-native; do
  log "$b: $($b/twotower --version | tr '\n' ';')"
done

log "training products"
for b in build build-native; do
  $b/bench_bf16_products --batch 256 | sed "s|^{|{\"build\": \"$b\", \"kind\": \"product\", |" >>"$RESULTS"
done

log "the lab's 30 epochs"
lab=$OUT/lab
[ -f $lab/test/interactions.csv ] || build/twotower generate --out $lab --seed 42 >/dev/null
for t in 1 2; do
  for r in $(seq "$ROUNDS"); do
    for b in build build-native; do
      s=$($b/twotower train --config config/ranking_config.yaml --quiet --set data.dir=$lab \
        --set model.score=cosine --set training.early_stopping_patience=0 --threads $t \
        --output-dir $OUT/runs | sed -n 's/.*trained in \([0-9.]*\)s.*/\1/p')
      echo "{\"build\": \"$b\", \"kind\": \"lab\", \"threads\": $t, \"round\": $r, \"train_seconds\": $s}" >>"$RESULTS"
    done
  done
done
rm -rf "$OUT/runs"

log "flat index, $N x 128 clustered"
[ -f "$OUT/data/base_clustered.npy" ] ||
  $PY bench/index_bench.py gen --out "$OUT/data" --n "$N" --d 128 --queries "$QUERIES" --users 10
for impl in flat flat-int8 flat-bf16; do
  for r in $(seq "$ROUNDS"); do
    for run in build build-native build:build; do
      b=${run%%:*}
      isa=${run#*:}
      [ "$isa" = "$run" ] && isa=
      line=$(env ${isa:+TWOTOWER_MAX_CPU_ISA=$isa} $b/bench_index run --impl $impl \
        --base "$OUT/data/base_clustered.npy" --queries "$OUT/data/queries_clustered.npy" \
        --threads 2 --dataset clustered --single "$SINGLE" --out-ids "$OUT/ids_$impl")
      echo "$line" | sed "s|^{|{\"build\": \"$run\", \"kind\": \"index\", \"round\": $r, |" >>"$RESULTS"
    done
  done
done

$PY - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(kind, build, key, **eq):
    v = [r[key] for r in rows if r["kind"] == kind and r["build"] == build
         and all(r.get(k) == x for k, x in eq.items())]
    return statistics.median(v) if v else float("nan")
print("| training product (one thread) | Eigen portable | Eigen native | sgemm portable | sgemm native |")
print("| --- | --- | --- | --- | --- |")
for p in [r["product"] for r in rows if r["kind"] == "product" and r["build"] == "build"]:
    g = {b: next(r for r in rows if r["kind"] == "product" and r["build"] == b and r["product"] == p)
         for b in ("build", "build-native")}
    print(f"| {p} | {g['build']['fp32_gflops']:.0f} | {g['build-native']['fp32_gflops']:.0f} | "
          f"{g['build']['fp32_sgemm_gflops']:.0f} | {g['build-native']['fp32_sgemm_gflops']:.0f} |")
print()
print("| lab, 30 epochs | portable (s) | native (s) | portable / native |")
print("| --- | --- | --- | --- |")
for t in (1, 2):
    p, n = med("lab", "build", "train_seconds", threads=t), med("lab", "build-native", "train_seconds", threads=t)
    print(f"| {t} thread(s) | {p:.2f} | {n:.2f} | {p / n:.3f} |")
print()
print("| flat index, 2 threads | portable q/s | native q/s | portable / native | portable, own AVX2 kernels q/s |")
print("| --- | --- | --- | --- | --- |")
for impl in ("flat", "flat-int8", "flat-bf16"):
    for key, what in (("qps1", "batch 1"), ("qps_batch", "batch")):
        p = med("index", "build", key, impl=impl)
        n = med("index", "build-native", key, impl=impl)
        a = med("index", "build:build", key, impl=impl)
        print(f"| {impl}, {what} | {p:,.0f} | {n:,.0f} | {p / n:.3f} | {a:,.0f} |")
PY
