#!/usr/bin/env bash
# Training under contention (issue 28): the lab's 30 epochs (config/ranking_config.yaml, the
# generator's default data, early stopping off) with `--threads 0` (all cores) and
# `--threads 1`, on an idle machine and while one other process keeps a core busy
# (`yes > /dev/null`), for each OpenMP wait setting given in POLICIES:
#   default   what the command does by itself
#   libgomp   the command with TWOTOWER_OMP_DEFAULTS=0: libgomp's own default (spin ~300,000
#             iterations at a barrier before sleeping)
#   passive   OMP_WAIT_POLICY=passive (sleep at once)
# Prints the median wall time of RUNS runs per cell.
#
#   bash bench/run_contention.sh     # RUNS=5 POLICIES="default libgomp passive"
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"
POLICIES="${POLICIES:-default libgomp passive}"
[ -x build/twotower ] || bash scripts/build.sh >/dev/null
DATA=data/recommendations/v1
[ -f "$DATA/train/interactions.csv" ] || build/twotower generate --out "$DATA" >/dev/null
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"; kill $busy 2>/dev/null || true' EXIT
busy=""
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
one() {  # policy threads
  local env=()
  case "$1" in
    libgomp) env=(TWOTOWER_OMP_DEFAULTS=0) ;;
    passive) env=(OMP_WAIT_POLICY=passive) ;;
  esac
  for _ in $(seq "$RUNS"); do
    local start end
    start=$(date +%s.%N)
    env "${env[@]}" build/twotower train --config config/ranking_config.yaml --threads "$2" \
      --set training.early_stopping_patience=0 --output-dir "$OUT" --quiet >/dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc
  done | median
}
echo "| wait setting | load | threads 0 (s) | threads 1 (s) | threads 0 / threads 1 |"
echo "| --- | --- | --- | --- | --- |"
for load in idle busy; do
  if [ "$load" = busy ]; then
    yes >/dev/null &
    busy=$!
  fi
  for policy in $POLICIES; do
    t0=$(one "$policy" 0)
    t1=$(one "$policy" 1)
    echo "| $policy | $load | $t0 | $t1 | $(echo "scale=2; $t0 / $t1" | bc) |"
  done
  if [ -n "$busy" ]; then kill "$busy"; busy=""; fi
done
