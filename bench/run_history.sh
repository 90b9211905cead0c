#!/usr/bin/env bash
# The user-history feature on MovieLens-100K (issue 13): the id-only config `twotower data
# movielens` writes for the random split (in-batch softmax over id embeddings, refit on train +
# val; the user-temporal config differs only by the history), without a history, and with
# each user's last LENGTH liked movies (by timestamp; per training example only those before it)
# embedded with the movie_id table and pooled by mean or by attention.
#
#   bash bench/run_history.sh [SRC] [OUT]   # SEEDS="0 1 2" SPLITS="user-temporal random" LENGTH=50
#
# A history adds a block to the user tower's input, so the towers need a Linear
# (model.projection: true); "none + projection" is the written config with that Linear alone, to
# tell its effect from the history's. Each refitted model's recommendations (`twotower recommend
# --all-users --exclude-seen`, histories read from the train and val files as a deployment would)
# are scored by bench/movielens_eval.py (numpy), which also fits EASE and MostPop on the same
# split: the numbers do not come from twotower's own metrics. Prints mean ± sample std over seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-../shared/data/ml-100k}"
OUT="${2:-/tmp/twotower_history}"
SEEDS="${SEEDS:-0 1 2}"
SPLITS="${SPLITS:-user-temporal random}"
LENGTH="${LENGTH:-50}"
TT="${TT:-./build/twotower}"
bash bench/install_missing.sh python3-numpy
[ -x "$TT" ] || bash scripts/build.sh -DTWOTOWER_BUILD_TESTS=OFF >/dev/null
mkdir -p "$OUT"
H=(--set model.projection=true --set features.timestamp=timestamp
   --set "features.history.length=$LENGTH")
# Each variant sets the history and the Linear itself: the config written for user-temporal
# already has the attention history.
declare -A SETS=(
  [none]="--set features.history.length=0 --set model.projection=false"
  [projection]="--set features.history.length=0 --set model.projection=true"
  [mean]="${H[*]} --set features.history.pooling=mean"
  [attention]="${H[*]} --set features.history.pooling=attention --set features.history.heads=1"
  [attention4]="${H[*]} --set features.history.pooling=attention --set features.history.heads=4"
)
VARIANTS="none projection mean attention attention4"
for split in $SPLITS; do
  for seed in $SEEDS; do
    d="$OUT/$split-$seed"
    rm -rf "$d"
    $TT data movielens --src "$SRC" --out "$d/data" --split "$split" --seed "$seed" >/dev/null
    recs=()
    for v in $VARIANTS; do
      read -r -a extra <<< "${SETS[$v]}"
      $TT train --config "$d/data/twotower.yaml" --seed "$seed" --output-dir "$d/runs_$v" \
        --quiet "${extra[@]}" > "$d/$v.log"
      run=$(sed -n 's/^run folder: \(.*\)\/$/\1/p' "$d/$v.log" | tail -n 1)
      $TT recommend --model "$run/model_refit.safetensors" --all-users --exclude-seen --k 20 \
        --out "$d/recs_$v.csv" --quiet > /dev/null
      recs+=("--recs=$v=$d/recs_$v.csv")
    done
    /usr/bin/python3 bench/movielens_eval.py "$d/data" "${recs[@]}" > "$d/eval.json"
    echo "$split seed $seed done" >&2
  done
done
/usr/bin/python3 - "$OUT" "$SEEDS" "$SPLITS" $VARIANTS <<'PY'
import json, sys
import numpy as np
out, seeds, splits, variants = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4:]
names = {"none": "none (the written config)", "projection": "none + projection (a Linear)",
         "mean": "history, mean-pooled", "attention": "history, attention (1 head)",
         "attention4": "history, attention (4 heads)",
         "ease_fit_train_val": "EASE, refit on train+val", "mostpop": "MostPop"}
def cell(v):
    v = np.array(v, dtype=float)
    return f"{v.mean():.4f} ± {(v.std(ddof=1) if len(v) > 1 else 0.0):.4f}"
print("| split | user history | Recall@10 | NDCG@10 | Recall@20 | NDCG@20 | seeds |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for split in splits:
    js = [json.load(open(f"{out}/{split}-{s}/eval.json")) for s in seeds]
    for key in variants + ["ease_fit_train_val", "mostpop"]:
        cells = [cell([j[key][m] for j in js]) for m in ("recall@10", "ndcg@10", "recall@20", "ndcg@20")]
        print(f"| {split} | {names[key]} | " + " | ".join(cells) + f" | {' '.join(seeds)} |")
PY
