#!/usr/bin/env bash
# Training at catalogue scale (issue 9): one epoch over 10,000,000 synthetic interactions with
# 1,000,000 users and 1,000,000 items (the lab's generator; id features plus the lab's
# features), for softmax, mixed and bpr, each with hard negatives, against the PyTorch twin
# (bench/reference/train_scale_torch.py: EmbeddingBag tables with SparseAdam) on the same
# threads. Reports examples per second and peak resident memory, one JSON line per run, then a
# table with the ratios.
#
#   bash bench/run_scale_bench.sh     # THREADS=2 LOSSES="softmax mixed bpr" HARD=64 NEG=256
#                                     # OUT=build/bench_scale (the data, ~600 MB, is kept there)
#                                     # PEER=0: twotower only (results appended to results.jsonl)
#
# twotower: bench_train_epoch (Trainer::Step over the epoch's examples, as `twotower train` steps,
# without the per-epoch validation), training.optimizer lazy_adam. Both sides: batch 1024, id
# tables of 32, towers Linear(64) -> ReLU -> Linear(32), L2-normalised, temperature 0.2, every
# interaction a positive (training.positives: all), the same hard negatives and drawn negatives.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-build/bench_scale}"
THREADS="${THREADS:-2}"
LOSSES="${LOSSES:-softmax mixed bpr}"
HARD="${HARD:-64}"
NEG="${NEG:-256}"
USERS="${USERS:-1000000}"
ITEMS="${ITEMS:-1000000}"
INTERACTIONS="${INTERACTIONS:-14285714}"  # the generator's 70% train split: 10,000,000
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-SkylakeX}"
[ -x build/bench_train_epoch ] || bash scripts/build.sh >/dev/null
PEER="${PEER:-1}"
if [ "$PEER" = 1 ]; then  # the peer's Debian packages, installed if missing
  bash bench/install_missing.sh python3-numpy python3-torch libopenblas0-pthread
fi
D="$OUT/data"
mkdir -p "$OUT"
if [ ! -f "$D/train/interactions.csv" ]; then
  echo "== generating $USERS users, $ITEMS items, $INTERACTIONS interactions" >&2
  build/twotower generate --out "$D" --users "$USERS" --movies "$ITEMS" \
    --interactions "$INTERACTIONS" --seed 1 >/dev/null
fi
cat > "$OUT/scale.yaml" <<YAML
seed: 1
threads: $THREADS
data:
  dir: $D
features:
  user:
    - {column: user_id, type: id, dim: 32}
    - {column: age, type: numeric}
    - {column: gender, type: categorical}
    - {column: favorite_genre, type: categorical}
    - {column: activity_level, type: categorical}
  item:
    - {column: movie_id, type: id, dim: 32}
    - {column: genre, type: categorical}
    - {column: year, type: numeric}
    - {column: duration, type: numeric}
    - {column: avg_rating, type: numeric}
model:
  embedding_dim: 32
  user_hidden_dims: [64]
  item_hidden_dims: [64]
  dropout: 0.0
training:
  batch_size: 1024
  learning_rate: 0.001
  epochs: 1
  temperature: 0.2
  positives: all
  optimizer: lazy_adam
  monitor: val_auc
  checkpoint: false
  loss: softmax
evaluation:
  k: []
YAML
RESULTS="$OUT/results.jsonl"
[ "$PEER" = 1 ] && : > "$RESULTS"
for loss in $LOSSES; do
  sets=("training.loss=$loss" "training.num_hard_negatives=$HARD")
  [ "$loss" = mixed ] && sets+=("training.num_uniform_negatives=$NEG")
  [ "$loss" = bpr ] && sets+=("training.num_negatives=$NEG")
  echo "== $loss: twotower" >&2
  line=$(build/bench_train_epoch "$OUT/scale.yaml" "${sets[@]}")
  echo "{\"impl\": \"twotower\", ${line:1}" | tee -a "$RESULTS"
  [ "$PEER" = 1 ] || continue
  echo "== $loss: PyTorch" >&2
  line=$(OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" /usr/bin/python3 \
    bench/reference/train_scale_torch.py "$D" --loss "$loss" --threads "$THREADS" \
    --hard "$HARD" --negatives "$NEG")
  echo "{\"impl\": \"pytorch\", ${line:1}" | tee -a "$RESULTS"
done
/usr/bin/python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| loss (hard negatives) | twotower examples/s | PyTorch examples/s | ratio | "
      "twotower peak MiB | PyTorch peak MiB |")
print("| --- | --- | --- | --- | --- | --- |")
for loss in dict.fromkeys(r["loss"] for r in rows):
    t = [r for r in rows if r["loss"] == loss and r["impl"] == "twotower"][-1]  # the latest
    p = next(r for r in rows if r["loss"] == loss and r["impl"] == "pytorch")
    print(f"| {loss} | {t['examples_per_second']:,} | {p['examples_per_second']:,} | "
          f"{t['examples_per_second'] / p['examples_per_second']:.1f}x | "
          f"{t['peak_rss_mib']:,.0f} | {p['peak_rss_mib']:,.0f} |")
PY
