#!/usr/bin/env bash
# Retrieval benchmark: twotower's FlatIndex and HnswIndex against FAISS (IndexFlatIP,
# IndexHNSWFlat) and hnswlib at equal parameters, on N x 128 float32 unit vectors (random and
# clustered) with 1,000 queries, threads 1 and 2; plus read bandwidth (and the exact scan's lower
# bound) and batch recommendations for USERS users. Prints markdown tables (also in
# $OUT/results.md); raw JSON lines in $OUT/results.jsonl.
#
#   bash bench/run_index_bench.sh                  # N=1,000,000, USERS=100,000
#   N=20000 USERS=2000 SINGLE=200 bash bench/run_index_bench.sh   # a check of the pipeline (4 min)
#
# At N=1,000,000 on 2 cores expect hours: every HNSW is built once per dataset (with the most
# threads, then searched with each count), and Debian's FAISS HNSW build is slow (67 s for 20,000 items on one thread here, so on the
# order of an hour per million); IMPLS picks a subset.
#
# Settings (environment): N, D (128), QUERIES (1000), USERS (100000), THREADS ("1 2"),
# DATASETS ("random clustered"), IMPLS ("faiss-flat flat flat-bf16 flat-int8 faiss-sq8 faiss-fp16
# hnsw hnswlib hnswlib-py faiss-hnsw"; flat-bf16 / flat-int8 are FlatIndex with compressed
# storage, faiss-sq8 / faiss-fp16 FAISS's IndexScalarQuantizer; hnsw-bf16 / hnsw-int8, HnswIndex
# with compressed storage, run when named), M (32), EF_CONSTRUCTION (200), EF_SEARCH ("64,128,256"),
# SINGLE (queries timed one at a time, 1000), BUILD (build-idx), OUT ($BUILD/index_bench),
# COMPARE_N (items for the same-graph HnswIndex/hnswlib comparison, 100000; 0 skips it),
# COMPARE_ROUNDS (11), USERS_THREADS (thread counts of the batch recommendations, $THREADS).
# The peers (FAISS and python3-hnswlib) run with OPENBLAS_CORETYPE=SkylakeX in their command
# only: this CPU has AVX-512 and Debian's OpenBLAS would not pick its AVX-512 kernels for it; and
# with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS equal to the thread count being measured (otherwise
# FAISS's matrix products use every core in its "1 thread" runs and oversubscribe in "2").
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000000}
D=${D:-128}
QUERIES=${QUERIES:-1000}
USERS=${USERS:-100000}
THREADS=${THREADS:-"1 2"}
USERS_THREADS=${USERS_THREADS:-$THREADS}
DATASETS=${DATASETS:-"random clustered"}
IMPLS=${IMPLS:-"faiss-flat flat flat-bf16 flat-int8 faiss-sq8 faiss-fp16 hnsw hnswlib hnswlib-py faiss-hnsw"}
M=${M:-32}
EF_CONSTRUCTION=${EF_CONSTRUCTION:-200}
EF_SEARCH=${EF_SEARCH:-"64,128,256"}
SINGLE=${SINGLE:-1000}
COMPARE_N=${COMPARE_N:-100000}
COMPARE_ROUNDS=${COMPARE_ROUNDS:-11}
BUILD=${BUILD:-build-idx}
OUT=${OUT:-$BUILD/index_bench}
PY=/usr/bin/python3
PEER_ENV="OPENBLAS_CORETYPE=SkylakeX"

# Debian packages the peers need, installed if missing.
bash bench/install_missing.sh python3-numpy python3-faiss python3-hnswlib
bash scripts/install_deps.sh

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$BUILD" bench_index >/dev/null
BENCH="$BUILD/bench_index"

mkdir -p "$OUT/data" "$OUT/ids"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
log() { echo "== $*" >&2; }

log "data: $N x $D, $QUERIES queries, $USERS users"
$PY bench/index_bench.py gen --out "$OUT/data" --n "$N" --d "$D" --queries "$QUERIES" \
  --users "$USERS"

for t in $THREADS; do
  log "read bandwidth, $t thread(s)"
  "$BENCH" bandwidth --threads "$t" --gib 1 | tee -a "$RESULTS"
done

# Graph indexes are built once per dataset with the most threads (MAX_T) and searched with each
# thread count; the exact ones are run per thread count (FAISS's BLAS threads are fixed at start).
MAX_T=$(echo $THREADS | tr ' ' '\n' | sort -n | tail -1)
SEARCH_T=${THREADS// /,}
for ds in $DATASETS; do
  base="$OUT/data/base_$ds.npy"
  queries="$OUT/data/queries_$ds.npy"
  for impl in $IMPLS; do
    hnsw=(--M "$M" --ef-construction "$EF_CONSTRUCTION" --ef-search "$EF_SEARCH")
    once=(--base "$base" --queries "$queries" --threads "$MAX_T" --search-threads "$SEARCH_T"
      --dataset "$ds" --single "$SINGLE" --out-ids "$OUT/ids/${ds}_$impl")
    case "$impl" in
      flat | flat-bf16 | flat-int8 | faiss-flat | faiss-sq8 | faiss-fp16)
        for t in $THREADS; do
          common=(--base "$base" --queries "$queries" --threads "$t" --dataset "$ds"
            --single "$SINGLE" --out-ids "$OUT/ids/${ds}_t${t}_$impl")
          if [ "${impl#flat}" != "$impl" ]; then
            log "$ds, $t thread(s): twotower $impl"
            "$BENCH" run --impl "$impl" "${common[@]}"
          else
            log "$ds, $t thread(s): FAISS $impl ($PEER_ENV)"
            env $PEER_ENV OPENBLAS_NUM_THREADS="$t" OMP_NUM_THREADS="$t" \
              $PY bench/index_bench.py run --impl "$impl" "${common[@]}"
          fi
        done ;;
      hnsw | hnsw-bf16 | hnsw-int8 | hnswlib)
        log "$ds: $impl built with $MAX_T thread(s), searched with $SEARCH_T (C++; hnswlib is the library itself, built with our flags)"
        "$BENCH" run --impl "$impl" "${once[@]}" "${hnsw[@]}" ;;
      faiss-hnsw | hnswlib-py)
        log "$ds: $impl built with $MAX_T thread(s), searched with $SEARCH_T ($PEER_ENV)"
        env $PEER_ENV OPENBLAS_NUM_THREADS="$MAX_T" OMP_NUM_THREADS="$MAX_T" \
          $PY bench/index_bench.py run --impl "$impl" "${once[@]}" "${hnsw[@]}" ;;
      *)
        echo "IMPLS: unknown $impl" >&2
        exit 2 ;;
    esac | tee -a "$RESULTS"
  done
done

if [ "$COMPARE_N" -gt 0 ]; then
  for ds in $DATASETS; do
    log "$ds: HnswIndex against hnswlib on the same graph (first $COMPARE_N items, one-thread builds)"
    "$BENCH" compare --base "$OUT/data/base_$ds.npy" --queries "$OUT/data/queries_$ds.npy" \
      --limit "$COMPARE_N" --threads "${THREADS// /,}" --dataset "$ds" --M "$M" \
      --ef-construction "$EF_CONSTRUCTION" --ef-search "$EF_SEARCH" --rounds "$COMPARE_ROUNDS" |
      tee -a "$RESULTS"
  done
fi

for t in $USERS_THREADS; do
  log "batch recommendations, $USERS users, $t thread(s)"
  "$BENCH" users --base "$OUT/data/base_random.npy" --users "$OUT/data/users_random.npy" \
    --threads "$t" --dataset random | tee -a "$RESULTS"
  env $PEER_ENV OPENBLAS_NUM_THREADS="$t" OMP_NUM_THREADS="$t" $PY bench/index_bench.py users --base "$OUT/data/base_random.npy" \
    --users "$OUT/data/users_random.npy" --threads "$t" --dataset random | tee -a "$RESULTS"
done

log "report (peers ran with $PEER_ENV)"
$PY bench/index_bench.py report --results "$RESULTS" --data "$OUT/data" \
  --markdown "$OUT/results.md"
echo "(FAISS and python3-hnswlib ran with $PEER_ENV; twotower and the C++ hnswlib without.)"
