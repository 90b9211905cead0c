#!/usr/bin/env bash
# The retrieval objectives on MovieLens (issue 9): every training.loss, without hard negatives,
# with them, and with easy negatives blended in, several seeds, beside MostPop and EASE computed
# in the same runs (bench/run_movielens.sh: same split, same protocol, bench/movielens_eval.py
# scores the recommendation files independently of twotower).
#
#   bash bench/run_objectives.sh [SRC] [OUT]     # SEEDS="0 1 2" SPLITS=random HARD=64 EASY=64
#                                                # ONLY="softmax+hard+easy ..." (a subset)
#
# Each objective keeps the MovieLens config twotower writes (batch 1024, temperature 0.2,
# refit on train + val) and changes only the loss settings listed below.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-../shared/data/ml-100k}"
OUT="${2:-/tmp/twotower_objectives}"
export SEEDS="${SEEDS:-0 1 2}"
export SPLITS="${SPLITS:-random}"
HARD="${HARD:-64}"
EASY="${EASY:-64}"
NEG="${NEG:-256}"
declare -a NAMES=(
  "softmax"
  "softmax+hard"
  "softmax+hard+easy"
  "mixed"
  "mixed+hard"
  "mixed+hard+easy"
  "bpr"
  "bpr+hard"
  "bpr+hard+easy"
  "triplet"
  "triplet+hard"
  "triplet+hard+easy"
)
declare -a SETTINGS=(
  "--set training.loss=softmax"
  "--set training.loss=softmax --set training.num_hard_negatives=$HARD"
  "--set training.loss=softmax --set training.num_hard_negatives=$HARD --set training.num_easy_negatives=$EASY"
  "--set training.loss=mixed --set training.num_uniform_negatives=$NEG"
  "--set training.loss=mixed --set training.num_uniform_negatives=$NEG --set training.num_hard_negatives=$HARD"
  "--set training.loss=mixed --set training.num_uniform_negatives=$NEG --set training.num_hard_negatives=$HARD --set training.num_easy_negatives=$EASY"
  "--set training.loss=bpr --set training.num_negatives=$NEG"
  "--set training.loss=bpr --set training.num_negatives=$NEG --set training.num_hard_negatives=$HARD"
  "--set training.loss=bpr --set training.num_negatives=$NEG --set training.num_hard_negatives=$HARD --set training.num_easy_negatives=$EASY"
  "--set training.loss=triplet --set training.num_negatives=$NEG"
  "--set training.loss=triplet --set training.num_negatives=$NEG --set training.num_hard_negatives=$HARD"
  "--set training.loss=triplet --set training.num_negatives=$NEG --set training.num_hard_negatives=$HARD --set training.num_easy_negatives=$EASY"
)
# ONLY="name ...": run just these variants (the summary then lists only them).
if [ -n "${ONLY:-}" ]; then
  keep_names=() keep_settings=()
  for i in "${!NAMES[@]}"; do
    case " $ONLY " in *" ${NAMES[$i]} "*) keep_names+=("${NAMES[$i]}") keep_settings+=("${SETTINGS[$i]}") ;; esac
  done
  NAMES=("${keep_names[@]}") SETTINGS=("${keep_settings[@]}")
fi
mkdir -p "$OUT"
for i in "${!NAMES[@]}"; do
  name="${NAMES[$i]}"
  echo "== $name: ${SETTINGS[$i]}" >&2
  SETS="${SETTINGS[$i]}" bash bench/run_movielens.sh "$SRC" "$OUT/$name" > "$OUT/$name.md"
done
/usr/bin/python3 - "$OUT" "${NAMES[@]}" <<'PY'
import json, sys
import numpy as np
out, names = sys.argv[1], sys.argv[2:]
def cell(v):
    v = np.array(v, dtype=float)
    return f"{v.mean():.4f} ± {(v.std(ddof=1) if len(v) > 1 else 0.0):.4f}"
print("| split | method | Recall@10 | NDCG@10 | Coverage@10 | seeds |")
print("| --- | --- | --- | --- | --- | --- |")
base = None
for name in names:
    rows = [json.loads(l) for l in open(f"{out}/{name}/results.jsonl")]
    for split in dict.fromkeys(r["split"] for r in rows):
        rs = [r for r in rows if r["split"] == split]
        seeds = " ".join(str(r["seed"]) for r in rs)
        m = lambda key, metric: cell([r[key][metric] for r in rs])
        print(f"| {split} | twotower {name} (refit) | {m('twotower_refit', 'recall@10')} | "
              f"{m('twotower_refit', 'ndcg@10')} | {m('twotower_refit', 'coverage@10')} | {seeds} |")
        base = base or (split, rs)
split, rs = base
for key, label in (("ease_fit_train_val", "EASE (refit on train+val)"), ("mostpop", "MostPop")):
    m = lambda metric: cell([r[key][metric] for r in rs])
    print(f"| {split} | {label} | {m('recall@10')} | {m('ndcg@10')} | {m('coverage@10')} | "
          f"{' '.join(str(r['seed']) for r in rs)} |")
PY
