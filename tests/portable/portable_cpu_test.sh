#!/usr/bin/env bash
# A portable build (TWOTOWER_NATIVE=OFF, the default) runs on a CPU without AVX-512 (issue 28):
# the binary is run under qemu-user emulating an x86-64 with AVX2 and FMA and no AVX-512 (the
# TCG "max" CPU of Debian 12's QEMU 7.2), and must
#  - report what it picked at run time: the build level of the index kernels, oneDNN's avx2
#    sgemm, no bf16;
#  - train (fp32), and refuse training.precision: bf16 naming the missing feature, making no run
#    folder;
#  - build index files byte-identical to the ones this machine builds at its own (AVX-512) level,
#    flat and HNSW (on one thread: a graph built by several depends on their timing), fp32, int8
#    and bf16;
#  - recommend the same top 30 of 60 items, with scores within 1e-5 (the user's embedding comes
#    from oneDNN's avx2 sgemm there and its avx512 one here: the sums are ordered differently).
# usage: portable_cpu_test.sh TWOTOWER_BINARY WORK_DIR
set -euo pipefail
tt=$(realpath "$1")
work=$2
source_dir=${TWOTOWER_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
qemu=$(command -v qemu-x86_64 || true)
[ -n "$qemu" ] || fail "qemu-x86_64 not found: install Debian's qemu-user (scripts/install_deps.sh installs it)"
emu() { "$qemu" -cpu max "$tt" "$@"; }
py=/usr/bin/python3

rm -rf "$work"
mkdir -p "$work"
cd "$work"

version=$(emu --version)
echo "$version"
grep -qx "index scan kernels: build (avx2)" <<<"$version" ||
  fail "under emulation the index kernels should run at the build level (avx2)"
grep -Eq "^bf16 training products: unavailable \((this CPU has neither AVX512_BF16 nor AMX-BF16|this build has no oneDNN)" \
  <<<"$version" || fail "under emulation bf16 should be unavailable"
grep -Eq "^fp32 training products: (oneDNN sgemm \(avx2\)|Eigen)$" <<<"$version" ||
  fail "under emulation oneDNN should pick its avx2 sgemm"
grep -q "^compiled for: -march=x86-64-v3 (portable)" <<<"$version" || fail "not a portable build"

"$tt" generate --out data --users 80 --movies 60 --interactions 1200 --seed 5 >/dev/null
config=(--config "$source_dir/config/ranking_config.yaml" --quiet --set data.dir=data
  --set training.epochs=1 --threads 1)
emu train "${config[@]}" --output-dir runs_emulated >/dev/null
ls runs_emulated/*/model_best.safetensors >/dev/null || fail "training under emulation wrote no model"
if emu train "${config[@]}" --set training.precision=bf16 --output-dir runs_bf16 2>bf16.err; then
  fail "bf16 training ran on a CPU without AVX512_BF16"
fi
grep -Eq "neither AVX512_BF16 nor AMX-BF16|this build has no oneDNN" bf16.err || fail "the bf16 refusal does not name the feature: $(cat bf16.err)"
[ ! -e runs_bf16 ] || fail "the refused bf16 run left a run folder"

"$tt" train "${config[@]}" --output-dir runs >/dev/null
model=$(ls runs/*/model_best.safetensors)
"$tt" embed --model "$model" --out items.npy >/dev/null
user=$(sed -n 2p data/users.csv | cut -d, -f1)
for type in flat flat:storage=int8 flat:storage=bf16 hnsw hnsw:storage=int8 hnsw:storage=bf16; do
  name=${type//[:=]/_}
  "$tt" index build --embeddings items.npy --type "$type" --out "$name.native.idx" --quiet \
    --threads 1 >/dev/null
  emu index build --embeddings items.npy --type "$type" --out "$name.emulated.idx" \
    --quiet --threads 1 >/dev/null
  cmp "$name.native.idx" "$name.emulated.idx" || fail "$type: the emulated build wrote another file"
  "$tt" recommend --model "$model" --index "$name.native.idx" --user-id "$user" --k 30 --json \
    >"$name.native.json"
  emu recommend --model "$model" --index "$name.native.idx" --user-id "$user" --k 30 --json \
    >"$name.emulated.json"
  "$py" - "$name.native.json" "$name.emulated.json" "$type" <<'PY' || exit 1
import json, sys
a = json.load(open(sys.argv[1]))["items"]
b = json.load(open(sys.argv[2]))["items"]
what = sys.argv[3]
if len(a) != 30 or len(b) != 30:
    sys.exit(f"FAIL: {what}: {len(a)} items natively, {len(b)} emulated")
sa = {x["item_id"]: x["score"] for x in a}
sb = {x["item_id"]: x["score"] for x in b}
if sa.keys() != sb.keys():
    # Only an item tied (within the tolerance) with the 30th may be swapped for another.
    edge = min(a[-1]["score"], b[-1]["score"])
    for i in set(sa) ^ set(sb):
        s = sa.get(i, sb.get(i))
        if abs(s - edge) > 1e-5:
            sys.exit(f"FAIL: {what}: item {i} ({s}) is in only one top 30")
for i, (x, y) in enumerate(zip(a, b)):
    if x["item_id"] in sb and abs(sa[x["item_id"]] - sb[x["item_id"]]) > 1e-5:
        sys.exit(f"FAIL: {what}: item {x['item_id']} scores {sa[x['item_id']]} vs {sb[x['item_id']]}")
    # Positions may differ only between items whose scores are within the tolerance.
    if x["item_id"] != y["item_id"] and abs(x["score"] - y["score"]) > 1e-5:
        sys.exit(f"FAIL: {what}: rank {i + 1} is {x['item_id']} natively, {y['item_id']} emulated")
print(f"{what}: {len(a)} items agree")
PY
done
echo "PASS: the portable binary runs on an emulated AVX2 CPU without AVX-512"
