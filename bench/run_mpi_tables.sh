#!/usr/bin/env bash
# Replicated embedding tables under MPI (issue 27) at two catalogue sizes: one epoch of
# `mpirun -np 2 twotower train` x 1 thread on id-only towers (user id and item id tables of 32,
# Linear(64) -> ReLU -> Linear(32), in-batch softmax with logQ, lazy Adam, global batch 1024),
# over data from `twotower generate` with IDS / 2 users and IDS / 2 items and 2 x IDS training
# rows (so most ids occur in training, and the tables hold about IDS rows in all).
#
#   bash bench/run_mpi_tables.sh            # IDS_LIST="1000000 10000000", OUT=build/bench_tables
#
# Prints per size: the tables' rows (the model's parameter count / 32), the epoch time and
# examples/s, the peak RSS of the larger rank, and rank 0's MPI traffic per step. With
# replicated tables every rank holds every row with its gradient and Adam moments (16 bytes a
# value); the touched rows' gradients are allgathered each step. BENCHMARKS.md compares that
# with row-sharded tables (rows sent to their owner), from these measured bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-build/bench_tables}"
IDS_LIST="${IDS_LIST:-1000000 10000000}"
[ -x build/twotower ] || bash scripts/build.sh >/dev/null
command -v mpirun >/dev/null || bash scripts/install_deps.sh
mkdir -p "$OUT"
for IDS in $IDS_LIST; do
  D="$OUT/data_$IDS"
  HALF=$((IDS / 2))
  # generate holds out 30% as validation and test: 2 x IDS training rows.
  ROWS=$((IDS * 2 * 10 / 7))
  if [ ! -f "$D/train/interactions.csv" ]; then
    echo "== generating $HALF users and $HALF items, $ROWS interactions" >&2
    build/twotower generate --out "$D" --users "$HALF" --movies "$HALF" --interactions "$ROWS" \
      --seed 1 >/dev/null
  fi
  cat >"$OUT/tables_$IDS.yaml" <<YAML
seed: 1
threads: 1
data:
  dir: $D
features:
  user:
    - {column: user_id, type: id, dim: 32}
  item:
    - {column: movie_id, type: id, dim: 32}
model:
  embedding_dim: 32
  user_hidden_dims: [64]
  item_hidden_dims: [64]
  dropout: 0.0
training:
  loss: softmax
  batch_size: 512
  learning_rate: 0.001
  epochs: 1
  temperature: 0.2
  positives: all
  optimizer: lazy_adam
  monitor: val_auc
  refit: false
  checkpoint: false
evaluation:
  k: []
output:
  dir: $OUT/runs
  name: tables
YAML
  log="$OUT/tables_$IDS.log"
  echo "== $IDS ids: mpirun -np 2" >&2
  /usr/bin/time -f "%e s wall, %M KiB peak (the larger rank)" \
    mpirun --allow-run-as-root --oversubscribe -np 2 build/twotower train \
    --config "$OUT/tables_$IDS.yaml" --quiet >"$log" 2>"$log.err"
  params=$(grep -oE '[0-9]+ trainable parameters' "$log" | head -1 | cut -d' ' -f1)
  train_rows=$(grep -oE 'interactions: train [0-9]+' "$log" | grep -oE '[0-9]+$')
  epoch=$(grep -E '^epoch 1/1' "$log" | sed -E 's/.*\(([0-9.]+)s\).*/\1/')
  echo "$IDS ids: $params parameters (tables about $((params / 32)) rows), $train_rows training" \
    "rows, epoch $epoch s, $(tail -1 "$log.err")"
  grep -E '^MPI traffic' "$log" || true
done
