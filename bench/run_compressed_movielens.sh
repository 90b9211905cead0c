#!/usr/bin/env bash
# Compressed flat storage on MovieLens-trained embeddings: for each seed, trains the MovieLens
# recipe, builds the item index as flat, flat:storage=bf16 and flat:storage=int8, writes every
# user's top 10 (--exclude-seen) with each, and compares the files byte for byte with the fp32
# one (identical files mean identical ids, order and scores for every user). Prints one line per
# seed and storage.
#
#   bash bench/run_compressed_movielens.sh [ML_DIR (../shared/data/ml-100k)] [OUT (/tmp/twotower_compressed_ml)]
#   SEEDS="0 1 2" (default)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-../shared/data/ml-100k}"
OUT="${2:-/tmp/twotower_compressed_ml}"
SEEDS="${SEEDS:-0 1 2}"
TT=./build/twotower
[ -x "$TT" ] || bash scripts/build.sh -DTWOTOWER_BUILD_TESTS=OFF >/dev/null
mkdir -p "$OUT"
for seed in $SEEDS; do
  d="$OUT/seed-$seed"
  rm -rf "$d"
  $TT data movielens --src "$SRC" --out "$d/data" --seed "$seed" >/dev/null
  $TT train --config "$d/data/twotower.yaml" --seed "$seed" --output-dir "$d/runs" --quiet \
    > "$d/train.log"
  run=$(sed -n 's/^run folder: \(.*\)\/$/\1/p' "$d/train.log" | tail -n 1)
  model="$run/model_best.safetensors"
  $TT embed --model "$model" --out "$d/items.npy" >/dev/null
  for type in flat flat:storage=bf16 flat:storage=int8; do
    name=${type//[:=]/_}
    $TT index build --embeddings "$d/items.npy" --type "$type" --out "$d/$name.index" --quiet \
      >/dev/null
    $TT recommend --model "$model" --index "$d/$name.index" --all-users --exclude-seen --k 10 \
      --out "$d/recs_$name.csv" --quiet >/dev/null
    if cmp -s "$d/recs_flat.csv" "$d/recs_$name.csv"; then same=identical; else same=DIFFERENT; fi
    echo "seed $seed, $type: $(($(wc -l < "$d/recs_$name.csv") - 1)) recommendation rows, $same to flat (fp32)"
  done
done
