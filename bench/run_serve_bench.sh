#!/usr/bin/env bash
# Serving benchmark: wrk (Debian) against `twotower serve` and against the lab's suggested peer,
# FastAPI + uvicorn + PyTorch serving the same model file with pre-computed item embeddings
# (bench/reference/serve_fastapi.py), on the same machine with the same request mix
# (bench/serve_mix.lua: POST /v1/recommend, k 10, random users, 1 in 20 an unknown user -> 404).
#
#   bash bench/run_serve_bench.sh   # ITEMS="1000 1000000" DURATION=20 REPEATS=3
#                                   # CONNECTIONS="16 64 256"
#
# For each catalogue size: generate data, train a small lab model (quality is not the point),
# embed the items; twotower serves them exactly (1,000) or from an HNSW index (1,000,000), the
# peer always exactly (torch matrix-vector product + topk: what the lab's FastAPI step does).
# For each count of keep-alive connections in CONNECTIONS: the peak (wrk closed-loop, every
# connection sends its next request as soon as the answer comes; REPEATS runs, the median
# requests/s), then the same connections paced to PACE (default 0.8) of that median
# (bench/serve_mix.lua's MEAN_DELAY_MS: Debian has no wrk2 for a fixed rate; the achieved rate is
# reported beside the latencies). twotower runs with its default threads (one per core, at least
# 2; TWOTOWER_THREADS to set), the peer PEER_WORKERS uvicorn worker processes with one torch /
# BLAS thread each (2: its best here, one per core); wrk WRK_THREADS.
# Prints one JSON line per run to $OUT/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS="${ITEMS:-1000 1000000}"
DURATION="${DURATION:-20}"
REPEATS="${REPEATS:-3}"
CONNECTIONS="${CONNECTIONS:-16 64 256}"
PACE="${PACE:-0.8}"
TWOTOWER_THREADS="${TWOTOWER_THREADS:-}"
PEER_WORKERS="${PEER_WORKERS:-2}"
WRK_THREADS="${WRK_THREADS:-1}"
USERS="${USERS:-10000}"
OUT="${OUT:-build/bench_serve}"
PY=/usr/bin/python3
T="$PWD/build/twotower"
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-SkylakeX}"
for p in wrk python3-fastapi python3-uvicorn python3-uvloop python3-httptools python3-torch \
  libopenblas0-pthread; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    { echo "missing Debian package: $p (apt-get install $p)"; exit 2; }
done
[ -x "$T" ] || bash scripts/build.sh >/dev/null
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
log() { echo "== $*" >&2; }

wait_up() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server on port $1 did not come up" >&2
  return 1
}

run_wrk() {  # name items connections port mode mean_delay_ms: REPEATS runs (fresh connections)
  local line
  for r in $(seq 1 "$REPEATS"); do
    line=$(USERS="$USERS" MEAN_DELAY_MS="$6" wrk -t"$WRK_THREADS" -c"$3" -d"${DURATION}s" \
      --timeout 10s -s bench/serve_mix.lua "http://127.0.0.1:$4" | grep '^{')
    echo "{\"server\": \"$1\", \"items\": $2, \"connections\": $3, \"mode\": \"$5\", \"run\": $r, ${line:1}" |
      tee -a "$RESULTS"
  done
}

median_rps() {  # server items connections: the median requests/s of its peak runs
  $PY - "$RESULTS" "$@" <<'PYEOF'
import json, statistics, sys
f, server, items, conns = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
runs = [json.loads(l) for l in open(f) if l.strip()]
print(statistics.median(r["rps"] for r in runs if r["server"] == server and r["items"] == items
                        and r["connections"] == conns and r["mode"] == "peak"))
PYEOF
}

run_loads() {  # name items port: for each connection count, the peak then PACE of it
  for c in $CONNECTIONS; do
    run_wrk "$1" "$2" "$c" "$3" peak 0
    local peak delay line rate
    peak=$(median_rps "$1" "$2" "$c")
    # Each connection's cycle is its wait plus the answer's latency: one calibration run with
    # the wait alone (c / target) measures the latency part (c / achieved - wait), and the
    # measured runs wait that much less, so that they offer about PACE of the peak.
    delay=$($PY -c "print($c * 1000.0 / ($PACE * $peak))")
    line=$(USERS="$USERS" MEAN_DELAY_MS="$delay" wrk -t"$WRK_THREADS" -c"$c" \
      -d"$(( (DURATION + 1) / 2 ))s" --timeout 10s -s bench/serve_mix.lua "http://127.0.0.1:$3" |
      grep '^{')
    rate=$(echo "$line" | $PY -c "import json, sys; print(json.loads(sys.stdin.read())['rps'])")
    delay=$($PY -c "d = $delay; print(max(0.0, 2 * d - $c * 1000.0 / $rate))")
    run_wrk "$1" "$2" "$c" "$3" paced "$delay"
  done
}

for n in $ITEMS; do
  D="$OUT/items_$n"
  mkdir -p "$D"
  if [ ! -f "$D/items.npy" ]; then
    log "$n items: data, a small model, embeddings"
    "$T" generate --out "$D/data" --users "$USERS" --movies "$n" --interactions 30000 --seed 1 \
      >/dev/null
    "$T" train --config config/ranking_config.yaml --set data.dir="$D/data" --epochs 1 \
      --set training.checkpoint=false --output-dir "$D/runs" --quiet >/dev/null
    cp "$D"/runs/*/model_best.safetensors "$D/model.safetensors"
    "$T" embed --model "$D/model.safetensors" --out "$D/items.npy" >/dev/null
  fi
  index_args=()
  if [ "$n" -ge 100000 ]; then
    if [ ! -f "$D/items.index" ]; then
      log "$n items: HNSW index"
      "$T" index build --embeddings "$D/items.npy" --type hnsw --out "$D/items.index" --quiet
    fi
    index_args=(--index "$D/items.index")
  fi
  thread_args=()
  [ -n "$TWOTOWER_THREADS" ] && thread_args=(--threads "$TWOTOWER_THREADS")
  log "$n items: twotower serve (${TWOTOWER_THREADS:-default} request threads)"
  "$T" serve --model "$D/model.safetensors" "${index_args[@]}" --port 18090 \
    "${thread_args[@]}" --events "$D/events.jsonl" >"$D/serve.log" 2>&1 &
  pid=$!
  wait_up 18090
  run_loads twotower "$n" 18090
  kill -TERM "$pid"
  wait "$pid" || true
  log "$n items: FastAPI + PyTorch ($PEER_WORKERS uvicorn workers, 1 torch thread each)"
  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    $PY bench/reference/serve_fastapi.py --model "$D/model.safetensors" --embeddings "$D/items.npy" \
    --users "$D/data/users.csv" --port 18091 --torch-threads "${PEER_TORCH_THREADS:-1}" \
    --workers "$PEER_WORKERS" >"$D/peer.log" 2>&1 &
  peer=$!
  wait_up 18091
  run_loads fastapi-torch "$n" 18091
  kill -TERM "$peer"
  wait "$peer" || true
done
log "results in $RESULTS"
# Medians over the runs of each (server, items, connections), and each server's best median.
$PY - "$RESULTS" <<'PYEOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = {}
for r in runs:
    groups.setdefault((r["items"], r["server"], r["connections"], r["mode"]), []).append(r)
print("| items | server | connections | load | requests/s (median of %d) | runs | p50 ms | p99 ms |"
      % max(len(g) for g in groups.values()))
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
best = {}
for (items, server, conns, mode), g in sorted(groups.items(), key=lambda kv: (
        kv[0][0], kv[0][1], kv[0][2], kv[0][3] != "peak")):
    med = lambda k: statistics.median(x[k] for x in g)
    rps = med("rps")
    load = "peak"
    if mode == "peak":
        best[(items, server)] = max(best.get((items, server), 0), rps)
        peak = rps
    else:
        load = "paced, %.0f%% of peak" % (100 * rps / peak)
    print("| %s | %s | %d | %s | %.0f | %s | %.2f | %.2f |" % (
        f"{items:,}", server, conns, load, rps, " / ".join("%.0f" % x["rps"] for x in g),
        med("p50_ms"), med("p99_ms")))
for items in sorted({i for i, _ in best}):
    ours, peer = best.get((items, "twotower")), best.get((items, "fastapi-torch"))
    if ours and peer:
        print("%s items: twotower's best median %.0f / the peer's best median %.0f = %.1fx"
              % (f"{items:,}", ours, peer, ours / peer))
PYEOF
