#!/usr/bin/env bash
# Contention benchmark (issue 28, "no collapse under contention"): the lab's 30-epoch training
# and the serving benchmark, each with all cores (`--threads 0`) and with one thread
# (`--threads 1`), on an idle machine, beside one busy process (`yes > /dev/null`, one core
# kept busy), and (training only) in a cgroup with a one-CPU quota; `--threads 0` also with
# TWOTOWER_LOAD_AWARE=0 ("unaware": tasks shared whatever the load), and each beside a CPU-bound
# counter whose progress shows what the training takes from its neighbour. Prints one JSON line
# per run to $OUT/results.jsonl and markdown tables of medians.
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

# "quota": the runs go into a cgroup whose CPU quota is one CPU (100 ms per 100 ms period), as a
# container started with `--cpus 1` (needs root and a writable cgroup file system; else skipped).
QUOTA_DIR=
QUOTA_PROCS=
make_quota_cgroup() {
  if [ -d /sys/fs/cgroup/cpu ] && [ -w /sys/fs/cgroup/cpu ]; then  # cgroup v1's cpu hierarchy
    QUOTA_DIR=/sys/fs/cgroup/cpu/twotower_bench_quota
    mkdir -p "$QUOTA_DIR" && echo 100000 >"$QUOTA_DIR/cpu.cfs_period_us" &&
      echo 100000 >"$QUOTA_DIR/cpu.cfs_quota_us" || return 1
  elif [ -w /sys/fs/cgroup/cgroup.subtree_control ]; then  # cgroup v2
    QUOTA_DIR=/sys/fs/cgroup/twotower_bench_quota
    echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
    mkdir -p "$QUOTA_DIR" && echo "100000 100000" >"$QUOTA_DIR/cpu.max" || return 1
  else
    return 1
  fi
  QUOTA_PROCS="$QUOTA_DIR/cgroup.procs"
}
cleanup() {
  stop_load
  [ -n "$QUOTA_DIR" ] && rmdir "$QUOTA_DIR" 2>/dev/null || true
}
trap cleanup EXIT
loads="idle busy"
if make_quota_cgroup; then
  loads="idle busy quota"
else
  echo "no writable cgroup file system: the quota runs are skipped" >&2
fi
# The prefix that runs a command in load $1's place: inside the quota cgroup for "quota".
prefix() {
  pre=()
  [ "$1" = quota ] && pre=(sh -c 'echo $$ >"$0" && exec "$@"' "$QUOTA_PROCS")
  return 0
}

[ -f "$OUT/lab/train/interactions.csv" ] || "$T" generate --out "$OUT/lab" --seed 42 >/dev/null
# "unaware": this binary with TWOTOWER_LOAD_AWARE=0 (core/parallel.h: tasks are shared with
# every thread whatever the load, as before the load reading).
bins=("new=$T" "unaware=$T")
[ -n "$BASE" ] && bins+=("base=$BASE")
lab() {  # lab LOAD BINARY_ENTRY THREADS: prints the whole process's wall seconds
  local e=()
  [ "${2%%=*}" = unaware ] && e=(env TWOTOWER_LOAD_AWARE=0)
  { /usr/bin/time -f %e "${pre[@]}" "${e[@]}" "${2#*=}" train --config config/ranking_config.yaml \
    --quiet --set data.dir="$OUT/lab" --set training.early_stopping_patience=0 --threads "$3" \
    --set training.checkpoint=false --output-dir "$OUT/runs" >/dev/null; } 2>&1 | tail -1
}
for load in $loads; do
  [ "$load" = busy ] && start_load
  prefix "$load"
  for r in $(seq 1 "$REPS"); do
    for b in "${bins[@]}"; do
      # In the quota, --threads 2 is what --threads 0 was before it read the quota.
      ts="1 0"
      [ "$load" = quota ] && [ "${b%%=*}" = new ] && ts="1 0 2"
      for t in $ts; do
        # threads 1 never shares a task: the same run with or without the load reading; in the
        # quota --threads 0 is one thread either way (core/threads.h reads the quota)
        [ "${b%%=*}" = unaware ] && { [ "$t" = 1 ] || [ "$load" = quota ]; } && continue
        s=$(lab "$load" "$b" "$t")
        echo "{\"bench\": \"lab\", \"binary\": \"${b%%=*}\", \"load\": \"$load\", \"threads\": $t, \"run\": $r, \"seconds\": $s}" |
          tee -a "$RESULTS"
      done
    done
  done
  stop_load
done

# The busy process's side: a CPU-bound counter (Python) beside each training run reports the
# iterations per second it got; what the training's extra threads take from a neighbour (a
# server on the same box) shows there.
prefix idle
for r in $(seq 1 "$REPS"); do
  for b in "new=$T" "unaware=$T"; do
    for t in 1 0; do
      [ "${b%%=*}" = unaware ] && [ "$t" = 1 ] && continue
      "$PY" -c '
import signal, sys, time
n, t0 = 0, time.time()
def stop(*_):
    print(f"{n / (time.time() - t0) / 1e6:.3f}", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    n += 1' >"$OUT/neighbour.txt" &
      nb=$!
      sleep 0.3
      s=$(lab idle "$b" "$t")
      kill "$nb"
      wait "$nb" || true
      echo "{\"bench\": \"neighbour\", \"binary\": \"${b%%=*}\", \"load\": \"counter\", \"threads\": $t, \"run\": $r, \"seconds\": $s, \"neighbour_mips\": $(cat "$OUT/neighbour.txt" 2>/dev/null | grep . || echo null)}" |
        tee -a "$RESULTS"
    done
  done
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
         and r["load"] == load and r["threads"] == t and r.get(key) is not None]
    return statistics.median(v) if v else None
print("\n| run | binary | load | `--threads 1` | `--threads 0` | threads 0 / threads 1 |")
print("| --- | --- | --- | --- | --- | --- |")
for bench, key, unit in (("lab", "seconds", "s"), ("serve", "rps", " req/s")):
    for binary in ("new", "unaware", "base"):
        for load in ("idle", "busy", "quota"):
            # "unaware" has no threads-1 runs of its own: threads 1 shares nothing either way
            a = med(bench, "new" if binary == "unaware" else binary, load, 1, key)
            b = med(bench, binary, load, 0, key)
            if a is None or b is None:
                continue
            print(f"| {bench} | {binary} | {load} | {a:.2f}{unit} | {b:.2f}{unit} | {b / a:.2f} |")
q1, q2 = med("lab", "new", "quota", 1, "seconds"), med("lab", "new", "quota", 2, "seconds")
if q1 is not None and q2 is not None:
    print(f"| lab | new, `--threads 2` (what 0 was before the quota reading) | quota | {q1:.2f}s "
          f"| {q2:.2f}s | {q2 / q1:.2f} |")
print("\n| beside a CPU-bound counter | lab seconds | the counter's M iterations/s |")
print("| --- | --- | --- |")
for binary, t in (("new", 1), ("new", 0), ("unaware", 0)):
    s = med("neighbour", binary, "counter", t, "seconds")
    c = med("neighbour", binary, "counter", t, "neighbour_mips")
    c = c if c is not None else float("nan")
    if s is not None:
        print(f"| {binary} `--threads {t}` | {s:.2f} | {c:.2f} |")
PYEOF
