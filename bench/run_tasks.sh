#!/usr/bin/env bash
# Multi-task learning on MovieLens-100K (issue 13): the config `twotower data movielens` writes
# (in-batch softmax over id embeddings, refit on train + val), alone and with auxiliary heads:
# the rating (regression on the pair) and the genres (multi-label, from the item embedding).
#
#   bash bench/run_tasks.sh [SRC] [OUT]     # SEEDS="0 1 2" WEIGHT=0.1
#
# Prints test Recall@10 / NDCG@10 / AUC of liked among rated pairs and each task's test metric,
# mean ± sample standard deviation over the seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-../shared/data/ml-100k}"
OUT="${2:-/tmp/twotower_tasks}"
SEEDS="${SEEDS:-0 1 2}"
WEIGHT="${WEIGHT:-0.1}"
TT=./build/twotower
bash bench/install_missing.sh python3-numpy
[ -x "$TT" ] || bash scripts/build.sh -DTWOTOWER_BUILD_TESTS=OFF >/dev/null
mkdir -p "$OUT"
declare -A TASKS=(
  [none]=""
  [rating]="  - {name: rating, type: regression, column: rating, weight: $WEIGHT}"
  [genres]="  - {name: genres, type: item_class, column: genres, delimiter: '|', weight: $WEIGHT}"
  [both]="  - {name: rating, type: regression, column: rating, weight: $WEIGHT}
  - {name: genres, type: item_class, column: genres, delimiter: '|', weight: $WEIGHT}"
)
VARIANTS="none rating genres both"
for seed in $SEEDS; do
  d="$OUT/ml-$seed"
  rm -rf "$d"
  $TT data movielens --src "$SRC" --out "$d/data" --split random --seed "$seed" >/dev/null
  for v in $VARIANTS; do
    cp "$d/data/twotower.yaml" "$d/$v.yaml"
    if [ -n "${TASKS[$v]}" ]; then printf 'tasks:\n%s\n' "${TASKS[$v]}" >> "$d/$v.yaml"; fi
    $TT train --config "$d/$v.yaml" --seed "$seed" --output-dir "$d/runs_$v" --quiet > "$d/$v.log"
    run=$(sed -n 's/^run folder: \(.*\)\/$/\1/p' "$d/$v.log" | tail -n 1)
    cp "$run/test_metrics.json" "$d/$v.json"
  done
  echo "seed $seed done" >&2
done
/usr/bin/python3 - "$OUT" "$SEEDS" $VARIANTS <<'PY'
import json, sys
import numpy as np
out, seeds, variants = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
def cell(v):
    v = np.array(v, dtype=float)
    return f"{v.mean():.4f} ± {(v.std(ddof=1) if len(v) > 1 else 0.0):.4f}"
print("| auxiliary tasks | Recall@10 | NDCG@10 | AUC (liked among rated) | task metrics (test) | seeds |")
print("| --- | --- | --- | --- | --- | --- |")
for v in variants:
    js = [json.load(open(f"{out}/ml-{s}/{v}.json")) for s in seeds]
    tasks = []
    for name in js[0].get("tasks", {}):
        metric = next(iter(js[0]["tasks"][name]))
        tasks.append(f"{name} {metric} {cell([j['tasks'][name][metric] for j in js])}")
    print(f"| {v} | {cell([j['ranking']['recall@10'] for j in js])} | "
          f"{cell([j['ranking']['ndcg@10'] for j in js])} | {cell([j['auc'] for j in js])} | "
          f"{'; '.join(tasks) or '-'} | {' '.join(seeds)} |")
PY
