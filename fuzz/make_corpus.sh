#!/usr/bin/env bash
# Writes the seed corpora in fuzz/corpus/<target>/ (committed; scripts/fuzz.sh starts from them):
# small valid inputs of each format, made with the twotower binary in build/ from generated data,
# plus hand-written variants (quoting, byte-order mark, CRLF, float64 / Fortran-order /
# big-endian .npy). Run after `bash scripts/build.sh`; rerun when a format changes.
set -euo pipefail
cd "$(dirname "$0")/.."
T="$PWD/build/twotower"
C="$PWD/fuzz/corpus"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
rm -rf "$C"
mkdir -p "$C"/{csv,config,model,npy,ids,index,parquet}

"$T" generate --out "$W/data" --users 30 --movies 20 --interactions 200 --seed 1 >/dev/null
head -n 6 "$W/data/users.csv" >"$C/csv/users.csv"
head -n 6 "$W/data/movies.csv" >"$C/csv/movies.csv"
head -n 6 "$W/data/train/interactions.csv" >"$C/csv/interactions.csv"
printf 'id,title,genres\n1,"Toy Story, (1995)",Animation|Comedy\n2,"a ""quoted"" title",\n3,"two\nlines",Drama\n' \
  >"$C/csv/quoted.csv"
printf '\xef\xbb\xbfuser_id,movie_id,liked\r\n1,2,1\r\n2,3,0\r\n\r\n' >"$C/csv/bom_crlf.csv"

# Parquet seeds: the lab's tables in each codec, and a table with nulls, quoting and a
# dictionary that falls back to plain pages (convert's --row-group-rows 2: several row groups).
"$T" generate --out "$W/pq" --users 30 --movies 20 --interactions 60 --seed 1 --format parquet \
  >/dev/null
cp "$W/pq/users.parquet" "$C/parquet/users.parquet"
printf 'id,title,genres\n1,"Toy Story, (1995)",Animation|Comedy\n2,"a ""q"" title",\n3,x,Drama\n' \
  >"$W/quoted.csv"
for codec in snappy zstd gzip none; do
  "$T" convert "$W/quoted.csv" "$C/parquet/quoted_$codec.parquet" --compression "$codec" \
    --row-group-rows 2 >/dev/null
done
printf 'a,b,c\n1,,x\n2,2.5,\n,3.5,z\n' >"$W/nulls.csv"
"$T" convert "$W/nulls.csv" "$C/parquet/nulls.parquet" --compression none >/dev/null

cp config/ranking_config.yaml "$C/config/ranking.yaml"
cat >"$C/config/ids.yaml" <<'YAML'
seed: 0
data: {dir: data, users: users.csv, items: movies.csv}
model: {embedding_dim: 8, projection: false, normalize: true}
training: {loss: softmax, temperature: 0.2, logq_correction: true, monitor: val_recall@10}
evaluation: {k: [10, 20]}
features:
  user_id: user_id
  item_id: movie_id
  label: liked
  user: [{column: user_id, type: id}]
  item:
    - {column: movie_id, type: id, buckets: 64}
    - {column: genres, type: multi_hot, delimiter: "|", pooling: mean}
    - {column: year, type: numeric, missing: mean}
YAML

small=(--set model.embedding_dim=4 --set model.user_hidden_dims=4 --set model.item_hidden_dims=4
  --set data.dir="$W/data" --epochs 1 --threads 1 --quiet --output-dir "$W/runs")
"$T" train --config config/ranking_config.yaml "${small[@]}" >/dev/null
cp "$W"/runs/*/model_best.safetensors "$C/model/lab.safetensors"

"$T" embed --model "$C/model/lab.safetensors" --out "$W/e.npy" >/dev/null
cp "$W/e.npy" "$C/npy/float32.npy"
python3 - "$C" <<'PY'
import struct, sys
c = sys.argv[1]
def npy(path, descr, fortran, shape, values, fmt):
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False", shape)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack(fmt % len(values), *values))
npy(c + "/npy/float64.npy", "<f8", False, "(2, 3)", [1, 2, 3, 4, 5, 6], "<%dd")
npy(c + "/npy/fortran.npy", "<f4", True, "(2, 3)", [1, 4, 2, 5, 3, 6], "<%df")
npy(c + "/npy/big_endian.npy", ">f4", False, "(3, 2)", [1, 2, 3, 4, 5, 6], ">%df")
# The ids file fuzz_ids reads beside its fixed 3 x 2 matrix [[1, 2], [3, 4], [5, 6]]: the
# header's CRC-32C (Castagnoli, reflected 0x82F63B78) over the float32 bytes.
crc = 0xFFFFFFFF
for b in struct.pack("<6f", 1, 2, 3, 4, 5, 6):
    crc ^= b
    for _ in range(8):
        crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
crc ^= 0xFFFFFFFF
with open(c + "/ids/header.txt", "w") as f:
    f.write("# twotower-ids rows=3 dim=2 crc32c=%08x model=sha256:%s\na\nb\nc\n" % (crc, "0" * 64))
with open(c + "/ids/plain.txt", "wb") as f:
    f.write(b"\xef\xbb\xbf1\r\n2\r\n3\r\n")
PY

# Index seeds, each followed by the mode byte fuzz_index strips (3: repair size and checksum).
"$T" index build --embeddings "$W/e.npy" --out "$W/flat.index" --quiet >/dev/null
"$T" index build --embeddings "$W/e.npy" --type hnsw:M=4,ef_construction=8 --out "$W/hnsw.index" \
  --quiet >/dev/null
for s in bf16 int8; do
  "$T" index build --embeddings "$W/e.npy" --type flat:storage=$s --out "$W/flat_$s.index" \
    --quiet >/dev/null
done
for f in flat flat_bf16 flat_int8 hnsw; do
  cat "$W/$f.index" <(printf '\x03') >"$C/index/$f.index"
done
ls -l "$C"/* | awk '{s += $5} END {print "corpus bytes:", s}'
