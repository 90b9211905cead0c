#!/usr/bin/env bash
# The lab end to end: install what is missing, build, generate the data, train with
# config/ranking_config.yaml, evaluate the best model on the test split, embed all movies and
# print recommendations for a user.
set -euo pipefail
cd "$(dirname "$0")/.."
USER_ID="${USER_ID:-42}"
bash scripts/build.sh -DTWOTOWER_BUILD_TESTS=OFF
tt=./build/twotower

echo "== generate"
$tt generate --out data/recommendations/v1 --users 1000 --movies 500 --interactions 10000 --seed 42
log=$(mktemp)
trap 'rm -f "$log"' EXIT
$tt train --config config/ranking_config.yaml | tee "$log"
run=$(sed -n 's/^run folder: \(.*\)\/$/\1/p' "$log" | tail -n 1)

echo "== evaluate (best model on the test split)"
$tt evaluate --model "$run/model_best.safetensors" --interactions data/recommendations/v1/test/interactions.csv
echo "== embed"
$tt embed --model "$run/model_best.safetensors" --items data/recommendations/v1/movies.csv \
  --out "$run/item_embeddings.npy"
echo "== recommend"
$tt recommend --model "$run/model_best.safetensors" --embeddings "$run/item_embeddings.npy" \
  --user-id "$USER_ID" --k 10 --exclude-seen
