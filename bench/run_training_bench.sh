#!/usr/bin/env bash
# Training speed, twotower against the PyTorch peer (bench/reference/train_torch.py), on this
# machine, in one run. Prints JSON lines to bench_results/training.jsonl and a markdown report.
#   bash bench/run_training_bench.sh            # everything (about 10 minutes on 2 cores)
#   bash bench/run_training_bench.sh --quick    # skip the 10M-interaction epoch
# The peer runs with OPENBLAS_CORETYPE set to this CPU's core (Debian's OpenBLAS 0.3.21 does not
# recognise it and would fall back to a generic kernel) and OPENBLAS_NUM_THREADS = its threads.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
PY=/usr/bin/python3
for p in python3-torch python3-numpy libopenblas0-pthread; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="${missing:-} $p"
done
if [ -n "${missing:-}" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if grep -q avx512f /proc/cpuinfo; then core=SkylakeX; elif grep -q avx2 /proc/cpuinfo; then core=Haswell; else core=; fi
bash scripts/build.sh -DTWOTOWER_BUILD_TESTS=OFF -DTWOTOWER_BUILD_BENCHMARKS=ON
tt=build/twotower
out=bench_results
mkdir -p "$out"
res="$out/training.jsonl"
: > "$res"
peer() {  # peer THREADS ARGS...: the PyTorch reference with its BLAS set up for this CPU
  local t=$1
  shift
  env OPENBLAS_CORETYPE="$core" OPENBLAS_NUM_THREADS="$t" OMP_NUM_THREADS="$t" $PY bench/reference/train_torch.py "$@" --threads "$t"
}
median_of_3() {  # runs a command printing one JSON line with us_per_step three times, keeps the median
  for i in 1 2 3; do "$@"; done | $PY -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
rows.sort(key=lambda r: r["us_per_step"])
print(json.dumps(rows[1]))'
}

echo "== matrix-product peak" >&2
for t in 1 2; do build/bench_sgemm_peak --threads $t | sed 's/}$/, "kind": "sgemm"}/' >> "$res"; done
for t in 1 2; do
  env OPENBLAS_CORETYPE="$core" OPENBLAS_NUM_THREADS=$t $PY -c '
import json, time, numpy as np, sys
a = np.random.rand(1024, 1024).astype(np.float32); ts = []
for i in range(17):
    t0 = time.perf_counter(); a @ a; ts.append(time.perf_counter() - t0)
print(json.dumps({"engine": "openblas", "n": 1024, "threads": int(sys.argv[1]), "kind": "sgemm",
                  "gflops": round(2 * 1024**3 / sorted(ts[2:])[7] / 1e9, 1)}))' $t >> "$res"
done

echo "== one training step" >&2
for b in 256 4096; do
  for t in 1 2; do
    steps=$([ $b = 256 ] && echo 300 || echo 30)
    median_of_3 build/bench_train_step --batch $b --threads $t --steps $steps | sed 's/}$/, "kind": "step"}/' >> "$res"
    median_of_3 peer $t step --batch $b --steps $steps | sed 's/}$/, "kind": "step"}/' >> "$res"
  done
done

echo "== the lab's full training (30 epochs, no early stopping, score cosine)" >&2
data=$out/lab
$tt generate --out $data --seed 42 >/dev/null
for t in 1 2; do
  log=$($tt train --config config/ranking_config.yaml --quiet --set data.dir=$data \
    --set model.score=cosine --set training.early_stopping_patience=0 --threads $t --output-dir $out/runs)
  secs=$(echo "$log" | sed -n 's/.*trained in \([0-9.]*\)s.*/\1/p')
  auc=$(echo "$log" | sed -n 's/^test: .* AUC \([0-9.]*\) .*/\1/p')
  echo "{\"engine\": \"twotower\", \"kind\": \"lab\", \"threads\": $t, \"train_seconds\": $secs, \"test_auc\": $auc}" >> "$res"
  peer $t train --data $data --epochs 30 --patience 0 --score cosine | sed 's/}$/, "kind": "lab"}/' >> "$res"
done

epoch() {  # epoch NAME USERS MOVIES INTERACTIONS
  local d=$out/$1
  echo "== one epoch over $4 interactions" >&2
  [ -f $d/test/interactions.csv ] || $tt generate --out $d --users $2 --movies $3 --interactions $4 --seed 7 >/dev/null
  local n=$(($(wc -l < $d/train/interactions.csv) - 1))
  for t in 1 2; do
    /usr/bin/time -f "%M" -o $out/rss.txt $tt train --config config/ranking_config.yaml --quiet \
      --set data.dir=$d --epochs 1 --threads $t --output-dir $out/runs > $out/log.txt
    local secs=$(sed -n 's/^epoch 1\/1 .*(\([0-9.]*\)s).*/\1/p' $out/log.txt)
    echo "{\"engine\": \"twotower\", \"kind\": \"epoch\", \"data\": \"$1\", \"threads\": $t, \"train_rows\": $n, \"epoch_seconds\": $secs, \"peak_rss_mib\": $(( $(cat $out/rss.txt) / 1024 ))}" >> "$res"
  done
  /usr/bin/time -f "%M" -o $out/rss.txt env OPENBLAS_CORETYPE="$core" OPENBLAS_NUM_THREADS=1 \
    $PY bench/reference/train_torch.py train --data $d --epochs 1 --patience 0 --threads 1 > $out/log.txt
  $PY - "$1" "$n" "$(cat $out/rss.txt)" "$out/log.txt" >> "$res" <<'PYEOF'
import json, sys
r = json.loads(open(sys.argv[4]).read().strip().splitlines()[-1])
print(json.dumps({"engine": "pytorch", "kind": "epoch", "data": sys.argv[1], "threads": 1,
                  "train_rows": int(sys.argv[2]), "epoch_seconds": r["train_seconds"],
                  "peak_rss_mib": int(sys.argv[3]) // 1024}))
PYEOF
}
epoch 1M 20000 5000 1000000
[ $quick = 1 ] || epoch 10M 100000 10000 10000000

$PY bench/format_training.py "$res" "$core"
