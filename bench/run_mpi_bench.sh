#!/usr/bin/env bash
# Data-parallel training over MPI (issue 27) on this machine: one epoch of `twotower train` over
# the 10M-interaction scale set (bench/run_scale_bench.sh's data: 1,000,000 users and items,
# 10,000,000 training rows), 1 process x 1 thread against `mpirun -np 2` x 1 thread, the same
# global batch (1024 = 2 x 512) and so the same objective; then the peer, PyTorch
# DistributedDataParallel over gloo with 2 processes x 1 thread on the same model, objective and
# global batch (bench/reference/train_ddp_torch.py, on the first PEER_EXAMPLES examples).
#
#   bash bench/run_mpi_bench.sh     # OUT=build/bench_scale (the data, ~600 MB, is kept there)
#                                   # PEER=0: twotower only; PEER_EXAMPLES=300000
#
# A third run, 2 ranks with data.shards: 2, shows what reading a part per rank saves.
#
# The model: id tables of 32 plus the lab's features, towers Linear(64) -> ReLU -> Linear(32),
# L2-normalised, in-batch softmax (temperature 0.2, logQ correction), lazy Adam, no hard
# negatives. twotower's epoch time is the one `train` prints: the training pass and the
# validation split's AUC (every rank validates the whole split). Prints one line per run and
# the MPI traffic line of rank 0.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-build/bench_scale}"
PEER="${PEER:-1}"
PEER_EXAMPLES="${PEER_EXAMPLES:-300000}"
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-SkylakeX}"
[ -x build/twotower ] || bash scripts/build.sh >/dev/null
command -v mpirun >/dev/null || bash scripts/install_deps.sh
if [ "$PEER" = 1 ]; then
  bash bench/install_missing.sh python3-numpy python3-torch libopenblas0-pthread
fi
D="$OUT/data"
mkdir -p "$OUT"
if [ ! -f "$D/train/interactions.csv" ]; then
  echo "== generating 1,000,000 users and items, 14,285,714 interactions" >&2
  build/twotower generate --out "$D" --users 1000000 --movies 1000000 \
    --interactions 14285714 --seed 1 >/dev/null
fi
cat >"$OUT/mpi.yaml" <<YAML
seed: 1
threads: 1
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
  loss: softmax
  batch_size: 1024
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
  name: mpi
YAML
run() {  # label, command...
  local label="$1"
  shift
  echo "== $label" >&2
  local log="$OUT/mpi_$label.log"
  /usr/bin/time -f "%e s wall, %M KiB peak (one rank)" "$@" >"$log" 2>"$log.err"
  echo "$label: $(grep -E '^epoch 1/1' "$log" | sed -E 's/.*\(([0-9.]+)s\).*/epoch \1 s/')," \
    "$(grep -E 'trained in' "$log" | sed -E 's/.*trained in ([0-9.]+)s.*/trained in \1 s/'), $(tail -1 "$log.err")"
  grep -E '^MPI traffic' "$log" || true
}
run one_rank build/twotower train --config "$OUT/mpi.yaml" --quiet
run two_ranks mpirun --allow-run-as-root --oversubscribe -np 2 build/twotower train \
  --config "$OUT/mpi.yaml" --set training.batch_size=512 --quiet
# data.shards: each rank reads only the rows of its part of the users (the batch is then drawn
# part by part: the objective of one process with data.shards 2, not 1).
run two_ranks_shards mpirun --allow-run-as-root --oversubscribe -np 2 build/twotower train \
  --config "$OUT/mpi.yaml" --set training.batch_size=512 --set data.shards=2 --quiet
if [ "$PEER" = 1 ]; then
  echo "== PyTorch DDP (gloo), 2 ranks x 1 thread, first $PEER_EXAMPLES examples" >&2
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/reference/train_ddp_torch.py \
    "$D" --ranks 2 --threads 1 --batch 512 --max-examples "$PEER_EXAMPLES"
  echo "== PyTorch, 1 process x 1 thread, first $PEER_EXAMPLES examples" >&2
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/reference/train_ddp_torch.py \
    "$D" --ranks 1 --threads 1 --batch 1024 --max-examples "$PEER_EXAMPLES"
fi
