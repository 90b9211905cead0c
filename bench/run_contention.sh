#!/usr/bin/env bash
# Contention benchmark (issue 28, "no collapse under contention"): the lab's 30-epoch training
# and the serving benchmark, each with all cores (`--threads 0`) and with one thread
# (`--threads 1`), on an idle machine and beside one busy process (`yes > /dev/null`, one core
# kept busy). Prints one JSON line per run to $OUT/results.jsonl and a markdown table of medians.
#
#   bash bench/run_contention.sh                       # REPS=5 SERVE_SECONDS=10
#   BASE=/path/to/older/twotower bash bench/run_contention.sh   # also times an older binary
#
# The training runs alternate between settings (and binaries), so that drifts of the machine
# fall on all of them alike; each figure is the median of REPS whole-process wall times.
# Serving: `twotower serve` on a 1,000-item model (exact search), wrk (one thread, 16
# connections) for SERVE_SECONDS (bench/serve_mix.lua), the median requests/s of REPS runs. On a
# 2-core machine wrk itself takes most of a core.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS="${REPS:-5}"
SERVE_SECONDS="${SERVE_SECONDS:-10}"
OUT="${OUT:-build/bench_contention}"
BASE="${BASE:-}"
PY=/usr/bin/python3
T="$PWD/build/twotower"
[ -x "$T" ] || bash scripts/build.sh >/dev/null
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
busy_pid=
start_load() { yes >/dev/null & busy_pid=$!; }
stop_load() { [ -n "$busy_pid" ] && kill "$busy_pid" 2>/dev/null && wait "$busy_pid" 2>/dev/null || true; busy_pid=; }
trap stop_load EXIT

[ -f "$OUT/lab/train/interactions.csv" ] || "$T" generate --out "$OUT/lab" --seed 42 >/dev/null
bins=("new=$T")
[ -n "$BASE" ] && bins+=("base=$BASE")
for load in idle busy; do
  [ "$load" = busy ] && start_load
  for r in $(seq 1 "$REPS"); do
    for b in "${bins[@]}"; do
      for t in 1 0; do
        s=$( { /usr/bin/time -f %e "${b#*=}" train --config config/ranking_config.yaml --quiet \
          --set data.dir="$OUT/lab" --set training.early_stopping_patience=0 --threads "$t" \
          --set training.checkpoint=false --output-dir "$OUT/runs" >/dev/null; } 2>&1 | tail -1)
        echo "{\"bench\": \"lab\", \"binary\": \"${b%%=*}\", \"load\": \"$load\", \"threads\": $t, \"run\": $r, \"seconds\": $s}" |
          tee -a "$RESULTS"
      done
    done
  done
  stop_load
done

if command -v wrk >/dev/null; then
  D="$OUT/serve"
  if [ ! -f "$D/model.safetensors" ]; then
    "$T" generate --out "$D/data" --users 10000 --movies 1000 --interactions 30000 --seed 1 >/dev/null
    "$T" train --config config/ranking_config.yaml --set data.dir="$D/data" --epochs 1 \
      --set training.checkpoint=false --output-dir "$D/runs" --quiet >/dev/null
    cp "$D"/runs/*/model_best.safetensors "$D/model.safetensors"
  fi
  # Both servers run side by side (the idle one waits in the kernel) and the wrk runs alternate
  # between them, so that drifts of the machine fall on both alike.
  pids=()
  for t in 1 0; do
    "$T" serve --model "$D/model.safetensors" --port $((18091 + t)) --threads "$t" \
      --events "$D/events_$t.jsonl" >"$D/serve_$t.log" 2>&1 &
    pids+=($!)
  done
  for t in 1 0; do
    for _ in $(seq 1 300); do
      curl -sf "http://127.0.0.1:$((18091 + t))/healthz" >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  for load in idle busy; do
    [ "$load" = busy ] && start_load
    for r in $(seq 1 "$REPS"); do
      for t in 1 0; do
        line=$(USERS=10000 MEAN_DELAY_MS=0 wrk -t1 -c16 -d"${SERVE_SECONDS}s" --timeout 10s \
          -s bench/serve_mix.lua "http://127.0.0.1:$((18091 + t))" | grep '^{')
        echo "{\"bench\": \"serve\", \"binary\": \"new\", \"load\": \"$load\", \"threads\": $t, \"run\": $r, ${line:1}" |
          tee -a "$RESULTS"
      done
    done
    stop_load
  done
  kill "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
else
  echo "wrk is missing (apt-get install wrk): the serving part is skipped" >&2
fi

$PY - "$RESULTS" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(bench, binary, load, t, key):
    v = [r[key] for r in rows if r["bench"] == bench and r["binary"] == binary
         and r["load"] == load and r["threads"] == t]
    return statistics.median(v) if v else None
print("\n| run | binary | load | `--threads 1` | `--threads 0` | threads 0 / threads 1 |")
print("| --- | --- | --- | --- | --- | --- |")
for bench, key, unit in (("lab", "seconds", "s"), ("serve", "rps", " req/s")):
    for binary in ("new", "base"):
        for load in ("idle", "busy"):
            a, b = med(bench, binary, load, 1, key), med(bench, binary, load, 0, key)
            if a is None or b is None:
                continue
            print(f"| {bench} | {binary} | {load} | {a:.2f}{unit} | {b:.2f}{unit} | {b / a:.2f} |")
PYEOF
