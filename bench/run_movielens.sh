#!/usr/bin/env bash
# MovieLens quality report: twotower against MostPop and EASE on the same splits, several seeds.
#
#   bash bench/run_movielens.sh [SRC] [OUT]
#   SRC   a MovieLens release folder (default ../shared/data/ml-100k; never committed)
#   OUT   scratch folder (default /tmp/twotower_movielens)
#   SEEDS="0 1 2"  SPLITS="random user-temporal"  SETS="--set key=value ..." (extra train flags)
#   TWIN=1: for seed 0 of the random split, also time the PyTorch twin (bench/reference/train_movielens_torch.py) for the same
#          epochs on the same data (1 and 2 threads, OpenBLAS set up for this CPU), and report
#          the faster
#   BCE=1: on the random split, also train the pointwise variant (same config, `--set` flags in BCE_SETS below) and
#          report its test AUC of liked among rated pairs
#
# For each split and seed: `twotower data movielens` writes the data and twotower.yaml, `twotower
# train` trains with that config unchanged (plus SETS), `twotower recommend --all-users
# --exclude-seen --k 20` writes every user's top 20, and bench/movielens_eval.py (numpy) computes
# MostPop, EASE (lambda and input chosen on validation; fitted on train, and refitted on train+val)
# and scores the recommendation file itself, independently of twotower's own metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-../shared/data/ml-100k}"
OUT="${2:-/tmp/twotower_movielens}"
SEEDS="${SEEDS:-0 1 2}"
SPLITS="${SPLITS:-random user-temporal}"
read -r -a EXTRA <<< "${SETS:-}"
TT=./build/twotower
# Debian packages the reference scripts need, installed if missing.
need=(python3-numpy)
[ "${TWIN:-0}" = 1 ] && need+=(python3-torch libopenblas0-pthread)
bash bench/install_missing.sh "${need[@]}"
[ -x "$TT" ] || bash scripts/build.sh -DTWOTOWER_BUILD_TESTS=OFF >/dev/null
mkdir -p "$OUT"
results="$OUT/results.jsonl"
: > "$results"
for split in $SPLITS; do
  for seed in $SEEDS; do
    d="$OUT/$split-$seed"
    rm -rf "$d"
    $TT data movielens --src "$SRC" --out "$d/data" --split "$split" --seed "$seed" >/dev/null
    start=$(date +%s%N)
    $TT train --config "$d/data/twotower.yaml" --seed "$seed" --output-dir "$d/runs" --quiet \
      "${EXTRA[@]}" > "$d/train.log"
    end=$(date +%s%N)
    run=$(sed -n 's/^run folder: \(.*\)\/$/\1/p' "$d/train.log" | tail -n 1)
    # The model selected on validation (trained on train only), and the refit on train + val when
    # the config asks for one (the model the run reports).
    $TT recommend --model "$run/model_best.safetensors" --all-users --exclude-seen --k 20 \
      --out "$d/recs_train.csv" --quiet >/dev/null
    recs=("twotower_train=$d/recs_train.csv")
    if [ -f "$run/model_refit.safetensors" ]; then
      $TT recommend --model "$run/model_refit.safetensors" --all-users --exclude-seen --k 20 \
        --out "$d/recs_refit.csv" --quiet >/dev/null
      recs+=("twotower_refit=$d/recs_refit.csv")
    fi
    /usr/bin/python3 bench/movielens_eval.py "$d/data" "${recs[@]/#/--recs=}" > "$d/eval.json"
    twin_seconds=null
    if [ "${TWIN:-0}" = 1 ] && [ "$split" = random ] && [ "$seed" = "${SEEDS%% *}" ]; then
      epochs=$(grep -c '^epoch ' "$d/train.log")
      refit=$(grep -c '^refit epoch ' "$d/train.log" || true)
      dim=$(sed -n 's/^  embedding_dim: //p' "$d/data/twotower.yaml")
      twin_seconds=$(for t in 1 2; do
        OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=$t /usr/bin/python3 \
          bench/reference/train_movielens_torch.py "$d/data" --epochs "$epochs" \
          --refit-epochs "$refit" --threads "$t" --dim "$dim" > "$d/twin_$t.json"
        /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['seconds'])" \
          "$d/twin_$t.json"
      done | sort -g | head -n 1)
    fi
    bce_auc=null
    if [ "${BCE:-0}" = 1 ] && [ "$split" = random ]; then
      # BCE on labelled pairs with the same id features, unnormalised towers and a batch L2
      # penalty: the pointwise model the issue's AUC target is about.
      BCE_SETS=(--set training.loss=bce --set model.normalize=false --set model.initial_scale=1
                --set training.embedding_l2=0.05 --set training.monitor=val_auc
                --set training.refit=false --set training.early_stopping_patience=4)
      $TT train --config "$d/data/twotower.yaml" --seed "$seed" --output-dir "$d/runs_bce" --quiet \
        "${BCE_SETS[@]}" > "$d/train_bce.log"
      bce_run=$(sed -n 's/^run folder: \(.*\)\/$/\1/p' "$d/train_bce.log" | tail -n 1)
      bce_auc=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['auc'])" \
        "$bce_run/test_metrics.json")
    fi
    /usr/bin/python3 - "$d/eval.json" "$split" "$seed" "$(( (end - start) / 1000000 ))e-3" "$bce_auc" "$twin_seconds" >> "$results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r.update(split=sys.argv[2], seed=int(sys.argv[3]), train_seconds=float(sys.argv[4]),
         bce_test_auc=json.loads(sys.argv[5]), twin_seconds=json.loads(sys.argv[6]))
print(json.dumps(r))
PY
    echo "$split seed $seed done ($(tail -n 1 "$d/train.log"))" >&2
  done
done
/usr/bin/python3 bench/movielens_summary.py "$results"
