#!/usr/bin/env bash
# `data interactions` + `tune` on MovieLens-100K's u.data against EASE (lambda and input chosen on
# validation, refitted on train + val) and MostPop on the same splits, several seeds.
#
#   bash bench/run_tune.sh [SRC] [OUT]
#   SRC   the ml-100k folder (default ../shared/data/ml-100k; never committed)
#   OUT   scratch folder (default /tmp/twotower_tune)
#   SEEDS="0 1 2"  SPLITS="random user-temporal"  TUNE="..." (extra tune flags, e.g. --budget 5m)
#
# For each split and seed: `twotower data interactions` reads u.data as any headerless TSV log
# (rating >= 4 is a positive), `twotower tune` searches with its defaults on validation and trains
# the best (refit on train + val), `twotower recommend --all-users --exclude-seen --k 20` writes
# every user's top 20, and bench/movielens_eval.py (numpy) scores that file and computes MostPop
# and EASE on the same split, read from `twotower data movielens`'s layout of the same seed (the
# same splitter: the script checks the two test splits hold the same pairs).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-../shared/data/ml-100k}"
OUT="${2:-/tmp/twotower_tune}"
SEEDS="${SEEDS:-0 1 2}"
SPLITS="${SPLITS:-random user-temporal}"
read -r -a EXTRA <<< "${TUNE:-}"
TT=./build/twotower
bash bench/install_missing.sh python3-numpy
[ -x "$TT" ] || bash scripts/build.sh -DTWOTOWER_BUILD_TESTS=OFF >/dev/null
mkdir -p "$OUT"
results="$OUT/results.jsonl"
: > "$results"
pairs() { tail -n +2 "$1" | cut -d, -f1,2 | sort; }
for split in $SPLITS; do
  for seed in $SEEDS; do
    d="$OUT/$split-$seed"
    rm -rf "$d"
    $TT data interactions --interactions "$SRC/u.data" --delimiter tab \
      --names user_id,item_id,rating,timestamp --rating rating --timestamp timestamp \
      --positive 'rating>=4' --split "$split" --seed "$seed" --out "$d/imp" >/dev/null
    $TT data movielens --src "$SRC" --out "$d/ml" --split "$split" --seed "$seed" >/dev/null
    if ! cmp -s <(pairs "$d/imp/test/interactions.csv") <(pairs "$d/ml/test/interactions.csv"); then
      echo "$split seed $seed: the two importers' test splits differ" >&2
      exit 1
    fi
    start=$(date +%s%N)
    $TT tune --config "$d/imp/twotower.yaml" --seed "$seed" --set "seed=$seed" \
      --set "output.dir=$d/runs" --out "$d/tune" --quiet "${EXTRA[@]}" > "$d/tune.log"
    end=$(date +%s%N)
    model=$(sed -n 's/^model: //p' "$d/tune.log" | tail -n 1)
    $TT recommend --model "$model" --all-users --exclude-seen --k 20 --out "$d/recs.csv" \
      --quiet >/dev/null
    sed -i '1s/item_id/movie_id/' "$d/recs.csv"
    /usr/bin/python3 bench/movielens_eval.py "$d/ml" --recs "twotower_refit=$d/recs.csv" \
      > "$d/eval.json"
    trials=$(grep -c '^trial ' "$d/tune.log")
    best=$(grep '^best: ' "$d/tune.log")
    /usr/bin/python3 - "$d/eval.json" "$split" "$seed" "$(( (end - start) / 1000000 ))e-3" \
      "$trials" >> "$results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r.update(split=sys.argv[2], seed=int(sys.argv[3]), train_seconds=float(sys.argv[4]),
         trials=int(sys.argv[5]))
print(json.dumps(r))
PY
    echo "$split seed $seed: $trials trials, $best, $(( (end - start) / 1000000000 ))s" >&2
    grep -A1 '^best: \|Recall' "$d/tune.log" | head -4 >&2 || true
  done
done
/usr/bin/python3 bench/movielens_summary.py "$results"
