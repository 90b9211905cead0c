#!/usr/bin/env bash
# The lab's comparison, measured: two-tower alone, a single tower (the ranker scoring every item)
# and two-tower + ranker re-ranking candidates, on MovieLens-100K (several seeds) and on the lab's
# synthetic data (where the generator's p_true gives the oracle AUC), plus the speed half on
# 1,682 and on 1,000,000 items (bench/lab_table.cc).
#
#   bash bench/run_lab_table.sh [SRC] [OUT]     # SEEDS="0 1 2" CANDIDATES=200 BIG=1000000
#                                               # SUMMARY_ONLY=1: the tables from OUT's files
#
# Quality (`twotower evaluate`, test split, train + val items excluded, as everywhere):
#   two_tower            the MovieLens config `twotower data movielens` writes (in-batch softmax,
#                        id embeddings), refit off so every model sees train only
#   ranker_all           config/movielens_ranker.yaml scoring all 1,682 movies (--candidates 1682)
#   two_tower+ranker     the two-tower's top CANDIDATES re-ordered by that ranker
#   ranker_rated_only    the same ranker trained on rated pairs alone (no sampled unrated pairs,
#                        selected on val AUC), scoring all movies
# AUC: of liked among rated test pairs, by the model that orders the final list.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-../shared/data/ml-100k}"
OUT="${2:-/tmp/twotower_lab_table}"
SEEDS="${SEEDS:-0 1 2}"
CANDIDATES="${CANDIDATES:-200}"
BIG="${BIG:-1000000}"
TT=./build/twotower
LAB=./build/bench_lab_table
bash bench/install_missing.sh python3-numpy
[ -x "$TT" ] && [ -x "$LAB" ] || bash scripts/build.sh -DTWOTOWER_BUILD_TESTS=OFF >/dev/null
mkdir -p "$OUT"
results="$OUT/results.jsonl"

run_folder() { sed -n 's/^run folder: \(.*\)\/$/\1/p' "$1" | tail -n 1; }
# "AUC recall@10 ndcg@10" from an evaluate output (the model's AUC: the first on its line, before
# the oracle's).
metrics() {
  awk '/ AUC / && auc == "" {for(i=1;i<=NF;i++) if($i=="AUC") {auc=$(i+1); break}}
       /^  Recall /{r=$2} /^  NDCG /{n=$2} END{print auc, r, n}' "$1"
}
# The five evaluations of a data set's folder ($1) on its test split: the two-tower model alone,
# each ranker scoring every one of the $2 items, and each re-ranking CANDIDATES.
evaluate_all() {
  local dir=$1 all=$2
  local m r rr test="$1/data/test/interactions.csv"
  m="$(run_folder "$dir/two_tower.log")/model_best.safetensors"
  r="$(run_folder "$dir/ranker.log")/model_best.safetensors"
  rr="$(run_folder "$dir/ranker_rated.log")/model_best.safetensors"
  $TT evaluate --model "$m" --interactions "$test" > "$dir/eval_two_tower.txt"
  local name ranker candidates
  for name in ranker_all rerank ranker_rated rerank_rated; do
    case $name in ranker_all | rerank) ranker=$r ;; *) ranker=$rr ;; esac
    case $name in ranker_all | ranker_rated) candidates=$all ;; *) candidates=$CANDIDATES ;; esac
    $TT evaluate --model "$m" --interactions "$test" --rerank "$ranker" \
      --candidates "$candidates" > "$dir/eval_$name.txt"
  done
}
record() {  # data seed row evaluate-output
  read -r auc recall ndcg <<< "$(metrics "$4")"
  echo "{\"data\": \"$1\", \"seed\": $2, \"row\": \"$3\", \"auc\": $auc, \"recall@10\": $recall, \"ndcg@10\": $ndcg}" >> "$results"
}

if [ "${SUMMARY_ONLY:-0}" != 1 ]; then
for seed in $SEEDS; do
  d="$OUT/ml-$seed"
  rm -rf "$d"
  $TT data movielens --src "$SRC" --out "$d/data" --split random --seed "$seed" >/dev/null
  $TT train --config "$d/data/twotower.yaml" --seed "$seed" --set training.refit=false \
    --output-dir "$d/runs" --quiet > "$d/two_tower.log"
  $TT train --config config/movielens_ranker.yaml --set "data.dir=$d/data" --seed "$seed" \
    --output-dir "$d/runs" --quiet > "$d/ranker.log"
  $TT train --config config/movielens_ranker.yaml --set "data.dir=$d/data" --seed "$seed" \
    --set training.sampler= --set training.monitor=val_auc --output-dir "$d/runs" --quiet \
    > "$d/ranker_rated.log"
  evaluate_all "$d" 1682
  if [ "$seed" = "${SEEDS%% *}" ]; then
    $LAB --model "$(run_folder "$d/two_tower.log")/model_best.safetensors" \
      --ranker "$(run_folder "$d/ranker.log")/model_best.safetensors" --users 200 \
      --candidates "$CANDIDATES" > "$OUT/speed_ml.json"
  fi
  echo "movielens seed $seed done" >&2

  # The lab's synthetic data and config: bce two-tower against the lab features' ranker.
  s="$OUT/lab-$seed"
  rm -rf "$s"
  $TT generate --out "$s/data" --seed "$seed" >/dev/null
  $TT train --config config/ranking_config.yaml --set "data.dir=$s/data" --seed "$seed" \
    --output-dir "$s/runs" --quiet > "$s/two_tower.log"
  $TT train --config config/ranking_config.yaml --set "data.dir=$s/data" --seed "$seed" \
    --set model.kind=ranker --set training.sampler=uniform --set training.num_negatives=256 \
    --set training.monitor=val_recall@10 --output-dir "$s/runs" --quiet > "$s/ranker.log"
  $TT train --config config/ranking_config.yaml --set "data.dir=$s/data" --seed "$seed" \
    --set model.kind=ranker --output-dir "$s/runs" --quiet > "$s/ranker_rated.log"
  evaluate_all "$s" 500
  echo "synthetic seed $seed done" >&2
done

# Speed at BIG items: the lab's generator with a BIG-movie catalogue, short training (the
# timings do not depend on the weights), an exact and an HNSW index.
b="$OUT/big"
rm -rf "$b"
$TT generate --out "$b/data" --users 2000 --movies "$BIG" --interactions 40000 --seed 0 >/dev/null
$TT train --config config/ranking_config.yaml --set "data.dir=$b/data" --epochs 2 \
  --set "evaluation.k=[]" --output-dir "$b/runs" --quiet > "$b/two_tower.log"
$TT train --config config/ranking_config.yaml --set "data.dir=$b/data" --epochs 2 \
  --set model.kind=ranker --set "evaluation.k=[]" --output-dir "$b/runs" --quiet > "$b/ranker.log"
M="$(run_folder "$b/two_tower.log")/model_best.safetensors"
R="$(run_folder "$b/ranker.log")/model_best.safetensors"
$TT embed --model "$M" --out "$b/items.npy" >/dev/null
$TT index build --embeddings "$b/items.npy" --type flat --out "$b/flat.index" >/dev/null
$TT index build --embeddings "$b/items.npy" --type hnsw:M=32,ef_construction=200,ef_search=64 \
  --out "$b/hnsw.index" >/dev/null
$LAB --model "$M" --ranker "$R" --index "$b/flat.index" --users 50 --ranker-all-users 5 \
  --candidates "$CANDIDATES" > "$OUT/speed_big_flat.json"
$LAB --model "$M" --ranker "$R" --index "$b/hnsw.index" --users 50 --ranker-all-users 5 \
  --candidates "$CANDIDATES" > "$OUT/speed_big_hnsw.json"
fi

: > "$results"
for seed in $SEEDS; do
  for data in movielens synthetic; do
    d="$OUT/$([ "$data" = movielens ] && echo ml || echo lab)-$seed"
    record "$data" "$seed" two_tower "$d/eval_two_tower.txt"
    record "$data" "$seed" ranker_all "$d/eval_ranker_all.txt"
    record "$data" "$seed" "two_tower+ranker" "$d/eval_rerank.txt"
    record "$data" "$seed" ranker_rated_only_all "$d/eval_ranker_rated.txt"
    record "$data" "$seed" "two_tower+ranker_rated_only" "$d/eval_rerank_rated.txt"
  done
  oracle=$(sed -n 's/.*oracle AUC \([0-9.]*\).*/\1/p' "$OUT/lab-$seed/eval_two_tower.txt" | head -n 1)
  echo "{\"data\": \"synthetic\", \"seed\": $seed, \"row\": \"oracle\", \"auc\": $oracle}" >> "$results"
done

/usr/bin/python3 - "$OUT" <<'PY'
import json, sys
import numpy as np
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/results.jsonl")]
def cell(v):
    v = np.array(v, dtype=float)
    return f"{v.mean():.4f} ± {(v.std(ddof=1) if len(v) > 1 else 0.0):.4f}"
print("| data | pipeline | AUC (liked among rated) | Recall@10 | NDCG@10 | seeds |")
print("| --- | --- | --- | --- | --- | --- |")
for data in dict.fromkeys(r["data"] for r in rows):
    for row in dict.fromkeys(r["row"] for r in rows if r["data"] == data):
        rs = [r for r in rows if r["data"] == data and r["row"] == row]
        seeds = " ".join(str(r["seed"]) for r in rs)
        if row == "oracle":
            print(f"| {data} | oracle (generator's p_true) | {cell([r['auc'] for r in rs])} | | | {seeds} |")
            continue
        print(f"| {data} | {row} | {cell([r['auc'] for r in rs])} | {cell([r['recall@10'] for r in rs])} | "
              f"{cell([r['ndcg@10'] for r in rs])} | {seeds} |")
print()
print("| items | index | two-tower ms/user | two-tower + ranker (candidates) ms/user | ranker on every item ms/user | add one item ms |")
print("| --- | --- | --- | --- | --- | --- |")
for name in ("speed_ml", "speed_big_flat", "speed_big_hnsw"):
    s = json.load(open(f"{out}/{name}.json"))
    print(f"| {s['items']:,} | {s['index']} | {s['two_tower_ms']:.3f} | {s['rerank_ms']:.3f} ({s['candidates']}) | "
          f"{s['ranker_all_ms']:.1f} | {s['add_item_ms']:.4f} |")
PY
