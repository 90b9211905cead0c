#!/usr/bin/env bash
# training.precision: bf16 against fp32 and against PyTorch (issue 28), on this machine, in one run.
#   bash bench/run_bf16_bench.sh [OUT]       (about 5 minutes on 2 cores; OUT default /tmp/bf16_bench)
# 1. The lab step's products, one thread: GFLOP/s of Eigen fp32, of nn::MatMulBf16 (rounding +
#    oneDNN) and of oneDNN's bf16 matmul alone (its own peak at the shape): bench_bf16_products.
# 2. One lab training step (batch 256), fp32 and bf16, 1 and 2 threads: bench_train_step, median
#    of 3 runs of 300 steps.
# 3. The lab's 30 epochs (score cosine, no early stopping: the training benchmark's setting),
#    whole training time, median of 3: twotower fp32 and bf16, PyTorch fp32 and PyTorch under
#    torch.autocast("cpu", dtype=torch.bfloat16), each at 1 and 2 threads (OpenBLAS set up for this
#    CPU as in run_training_bench.sh).
# 4. Quality: the lab's own config (early stopping on val AUC), seeds 1 2 3, test AUC fp32 / bf16.
# 5. The PyTorch twin of one bf16 step (bench/reference/check_bf16.py).
# Prints a markdown summary; the raw JSON lines are in OUT/bf16.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-/tmp/bf16_bench}"
PY=/usr/bin/python3
bash bench/install_missing.sh python3-torch python3-numpy libopenblas0-pthread
bash scripts/build.sh -DTWOTOWER_BUILD_BENCHMARKS=ON >/dev/null
if grep -q avx512f /proc/cpuinfo; then core=SkylakeX; elif grep -q avx2 /proc/cpuinfo; then core=Haswell; else core=; fi
tt=build/twotower
mkdir -p "$OUT"
res="$OUT/bf16.jsonl"
: > "$res"
median_json() {  # median_json KEY: the input JSON line with the median value of KEY
  $PY -c '
import json, sys
key = sys.argv[1]
rows = sorted((json.loads(l) for l in sys.stdin if l.startswith("{")), key=lambda r: r[key])
print(json.dumps(rows[len(rows) // 2]))' "$1"
}

echo "== products" >&2
build/bench_bf16_products --batch 256 | sed 's/}$/, "kind": "product"}/' >> "$res"

echo "== one step" >&2
for p in fp32 bf16; do
  for t in 1 2; do
    for i in 1 2 3; do build/bench_train_step --batch 256 --threads $t --steps 300 --precision $p; done |
      median_json us_per_step | sed 's/}$/, "kind": "step"}/' >> "$res"
  done
done

echo "== the lab's 30 epochs" >&2
data=$OUT/lab
[ -f $data/test/interactions.csv ] || $tt generate --out $data --seed 42 >/dev/null
for t in 1 2; do
  for p in fp32 bf16; do
    for i in 1 2 3; do
      log=$($tt train --config config/ranking_config.yaml --quiet --set data.dir=$data \
        --set model.score=cosine --set training.early_stopping_patience=0 \
        --set training.precision=$p --threads $t --output-dir $OUT/runs)
      secs=$(echo "$log" | sed -n 's/.*trained in \([0-9.]*\)s.*/\1/p')
      auc=$(echo "$log" | sed -n 's/^test: .* AUC \([0-9.]*\) .*/\1/p')
      echo "{\"engine\": \"twotower-$p\", \"threads\": $t, \"train_seconds\": $secs, \"test_auc\": $auc}"
    done | median_json train_seconds | sed 's/}$/, "kind": "lab"}/' >> "$res"
  done
  for a in "" --autocast; do
    for i in 1 2 3; do
      env OPENBLAS_CORETYPE="$core" OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t \
        $PY bench/reference/train_torch.py train --data $data --epochs 30 --patience 0 \
        --score cosine --threads $t $a
    done | median_json train_seconds | sed 's/}$/, "kind": "lab"}/' >> "$res"
  done
done

echo "== quality: the lab config, 3 seeds" >&2
for seed in 1 2 3; do
  for p in fp32 bf16; do
    log=$($tt train --config config/ranking_config.yaml --quiet --set data.dir=$data --seed $seed \
      --set training.precision=$p --output-dir $OUT/runs)
    auc=$(echo "$log" | sed -n 's/^test: .* AUC \([0-9.]*\) .*/\1/p')
    echo "{\"kind\": \"quality\", \"precision\": \"$p\", \"seed\": $seed, \"test_auc\": $auc}" >> "$res"
  done
done

echo "== the PyTorch twin of one bf16 step" >&2
run=$(ls -d $OUT/runs/ranking_model_* | tail -n 1)
$PY bench/reference/check_bf16.py "$run/model_best.safetensors" build/bench_grad_dump > "$OUT/twin.txt"
summary=$(tail -n 1 "$OUT/twin.txt")
echo "{\"kind\": \"twin\", \"summary\": \"$summary\"}" >> "$res"

$PY - "$res" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("### Products of the lab step, 1 thread, batch 256 (GFLOP/s)\n")
print("| product | m x k x n | fp32 (Eigen) | bf16 (twotower: round + oneDNN) | oneDNN bf16 alone | oneDNN kernel |")
print("| --- | --- | --- | --- | --- | --- |")
for r in rows:
    if r["kind"] == "product":
        print(f"| {r['product']} | {r['m']} x {r['k']} x {r['n']} | {r['fp32_gflops']} | "
              f"{r['bf16_gflops']} | {r['onednn_bf16_gflops']} | {r['onednn_impl']} ({r['bf16_engine']}) |")
print("\n### One lab training step, batch 256 (median of 3 runs of 300 steps)\n")
print("| threads | fp32 us/step | bf16 us/step | bf16 / fp32 time | bf16 GFLOP/s of the step |")
print("| --- | --- | --- | --- | --- |")
step = {(r["precision"], r["threads"]): r for r in rows if r["kind"] == "step"}
for t in (1, 2):
    f, b = step[("fp32", t)], step[("bf16", t)]
    print(f"| {t} | {f['us_per_step']} | {b['us_per_step']} | {b['us_per_step'] / f['us_per_step']:.2f} | {b['gflops']} |")
print("\n### The lab's 30 epochs, whole training time in seconds (median of 3)\n")
print("| threads | twotower fp32 | twotower bf16 | PyTorch fp32 | PyTorch autocast bf16 |")
print("| --- | --- | --- | --- | --- |")
lab = {(r["engine"], r["threads"]): r for r in rows if r["kind"] == "lab"}
for t in (1, 2):
    cells = [lab[(e, t)]["train_seconds"] for e in ("twotower-fp32", "twotower-bf16", "pytorch", "pytorch-autocast-bf16")]
    print(f"| {t} | " + " | ".join(str(c) for c in cells) + " |")
q = [r for r in rows if r["kind"] == "quality"]
f = [r["test_auc"] for r in q if r["precision"] == "fp32"]
b = [r["test_auc"] for r in q if r["precision"] == "bf16"]
print(f"\n### Lab test AUC, seeds 1 2 3: fp32 {statistics.mean(f):.4f} ({', '.join(map(str, f))}), "
      f"bf16 {statistics.mean(b):.4f} ({', '.join(map(str, b))}), difference of means "
      f"{statistics.mean(b) - statistics.mean(f):+.4f}")
for r in rows:
    if r["kind"] == "twin":
        print(f"\n### PyTorch twin of one bf16 step: {r['summary']}")
PYEOF
