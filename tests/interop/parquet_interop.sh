#!/usr/bin/env bash
# Parquet interop of twotower with independent readers and writers (DuckDB,
# hyparquet). See tests/interop/README.md.
#
#   tests/interop/parquet_interop.sh TWOTOWER_BIN [WORK_DIR]
#   tests/interop/parquet_interop.sh --self-test [WORK_DIR]   # the harness against a fake twotower
#
# Installs the pinned npm packages into NPM_DIR (default build/interop-npm) when
# they are missing. Exits 77 (CTest SKIP_RETURN_CODE) when the npm registry
# cannot be reached; otherwise prints one line per check, then "N passed, M failed".
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export NPM_DIR=${NPM_DIR:-$ROOT/build/interop-npm}
export INTEROP_DRIVER=1 # the scripts leave the overall total to this one

if [[ $# -lt 1 ]]; then
  echo "usage: $0 TWOTOWER_BIN [WORK_DIR] | --self-test [WORK_DIR]" >&2
  exit 2
fi
TARGET=$1
WORK=${2:-$ROOT/build/interop-work}
# A relative binary path is taken from the caller's directory.
if [[ $TARGET != --self-test && $TARGET == */* ]]; then TARGET=$(cd "$(dirname "$TARGET")" && pwd)/$(basename "$TARGET"); fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

skip() { echo "SKIPPED: parquet interop: $1"; exit 77; }
command -v node >/dev/null || skip "node not found"
command -v npm >/dev/null || skip "npm not found"

# --- install (only when the pinned set is not already there) ----------------
STAMP=$NPM_DIR/.installed-package.json
if ! cmp -s "$HERE/package.json" "$STAMP" || [[ ! -d $NPM_DIR/node_modules/@duckdb/node-api ]]; then
  t0=$SECONDS
  if ! ping_out=$(timeout 60 npm ping --fetch-retries=0 --fetch-timeout=20000 2>&1); then
    code=$(sed -n 's/^npm error code //p' <<<"$ping_out" | head -1)
    skip "npm registry unreachable (npm ping: ${code:-$(tail -1 <<<"$ping_out")})"
  fi
  mkdir -p "$NPM_DIR"
  cp "$HERE/package.json" "$NPM_DIR/package.json"
  # No package-lock: the packages are pinned to exact versions in package.json.
  if ! timeout 900 npm install --prefix "$NPM_DIR" --no-package-lock --no-audit --no-fund >"$NPM_DIR/install.log" 2>&1; then
    code=$(sed -n 's/^npm error code //p' "$NPM_DIR/install.log" | head -1)
    case $code in
      ENOTFOUND|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EAI_AGAIN|ENETUNREACH|EHOSTUNREACH)
        skip "npm registry unreachable (npm install: $code)" ;;
    esac
    echo "FAIL npm install into $NPM_DIR: ${code:-see $NPM_DIR/install.log}"
    tail -5 "$NPM_DIR/install.log" | sed 's/^/     /'
    echo "0 passed, 1 failed"
    exit 1
  fi
  cp "$HERE/package.json" "$STAMP"
  echo "installed npm packages into $NPM_DIR in $((SECONDS - t0)) s"
fi

# --- run ---------------------------------------------------------------------
LOG=$WORK/results.log
: >"$LOG"
crashed=0
step() { # step NAME SCRIPT ARGS...: run one script, keep its lines, note a crash
  local name=$1 out=$WORK/$1.log; shift
  node "$HERE/$1" "${@:2}" 2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]}
  cat "$out" >>"$LOG"
  # exit 1 with FAIL lines is an ordinary failure; anything else is a crash
  if [[ $rc -ne 0 ]] && ! grep -q '^FAIL ' "$out"; then
    echo "FAIL $name: exited $rc without a FAIL line" | tee -a "$LOG"
    crashed=1
  fi
}

t0=$SECONDS
if [[ $TARGET == --self-test ]]; then
  step selftest selftest.mjs "$WORK/selftest"
else
  step write_peer_files write_peer_files.mjs "$WORK/peer"
  step check_twotower_files check_twotower_files.mjs "$TARGET" "$WORK/peer" "$WORK/twotower"
fi
passed=$(grep -c '^PASS ' "$LOG")
failed=$(grep -c '^FAIL ' "$LOG")
echo "parquet interop ran in $((SECONDS - t0)) s; work files in $WORK"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 && $crashed -eq 0 ]]
