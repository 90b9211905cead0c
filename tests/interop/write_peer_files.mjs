// Writes Parquet files with independent writers (DuckDB, hyparquet-writer), each
// readable one with NAME.expected.csv in twotower's Parquet->CSV format, computed
// here from the source values, and a manifest.json describing every file.
//
//   node write_peer_files.mjs OUTDIR
//
// Every file is read back by DuckDB and by hyparquet and compared with the
// source values, and what it is meant to cover (page version, several pages per
// chunk, dictionary and plain chunks in one column, ...) is checked on the file
// itself, so a change in a writer's defaults shows up here and not as a puzzling
// twotower failure.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { join } from 'node:path'
import {
  AWKWARD, Report, censusByColumn, compareValues, duckChunks, loadPeers, openDuck, pageCensus,
  readArrayBuffer, rng, sqlStr, toCsv, zstdStored,
} from './lib.mjs'

const OUT = process.argv[2]
if (!OUT) { console.error('usage: node write_peer_files.mjs OUTDIR'); process.exit(2) }
rmSync(OUT, { recursive: true, force: true })
mkdirSync(OUT, { recursive: true })

const peers = await loadPeers()
const report = new Report()
const duck = await openDuck(peers.duckdb)
const duckVersion = (await duck.rows('select version() v'))[0].v
const manifest = { about: 'Parquet files from independent writers; see tests/interop/README.md', peers: peers.versions, duckdb: duckVersion, files: [] }

// Encodings twotower reads. RLE is listed because it is the BOOLEAN value
// encoding of hyparquet-writer (levels are RLE everywhere and are not page encodings).
const SUPPORTED_ENCODINGS = new Set(['PLAIN', 'PLAIN_DICTIONARY', 'RLE_DICTIONARY', 'RLE',
  'DELTA_BINARY_PACKED', 'DELTA_LENGTH_BYTE_ARRAY', 'DELTA_BYTE_ARRAY', 'BYTE_STREAM_SPLIT'])
const SUPPORTED_CODECS = new Set(['UNCOMPRESSED', 'SNAPPY', 'GZIP', 'ZSTD'])

// ---------------------------------------------------------------------------
// Source data: one definition, written by both writers.

const ROWS = 5000
const DUCK_ROW_GROUP = 2048 // DuckDB rounds ROW_GROUP_SIZE up to its 2048-row vectors anyway
const HYP_ROW_GROUP = 1500
const HYP_PAGE_BYTES = 2048 // small pages: several data pages per column chunk

const i64Random = r => BigInt.asIntN(64, (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32)))
const pick = (specials, i, other) => (i < specials.length ? specials[i] : other())
const hex = r => Math.floor(r() * 2 ** 32).toString(16).padStart(8, '0')

function sourceColumns() {
  const r = rng(20240601)
  const F32_SPECIAL = [0, -0, 1 / 3, 0.1, 3.4028234663852886e38, -3.4028234663852886e38, 1.401298464324817e-45,
    1.1754943508222875e-38, 16777217, 1e-10, 123456.789, -2.5]
  const F64_SPECIAL = [0, -0, 0.1, 1 / 3, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
    -1.7976931348623157e308, 2 ** 53 + 2, 1e21, 1e-7, 123456789.125, 100, -1e-300]
  const nonFinite = [NaN, Infinity, -Infinity]
  return [
    { name: 'id', type: 'INT64', required: true, gen: i => BigInt(i) },
    { name: 'flag', type: 'BOOLEAN', required: true, gen: i => i % 3 === 0 },
    { name: 'flag_opt', type: 'BOOLEAN', required: false, gen: i => (i % 7 === 0 ? null : (i * 7919) % 5 < 2) },
    { name: 'i32', type: 'INT32', required: true, gen: i => pick([-2147483648, 2147483647, 0, -1, 1], i, () => Math.floor(r() * 2 ** 32) - 2 ** 31) },
    { name: 'i32_opt', type: 'INT32', required: false, gen: i => (i % 6 === 1 ? null : Math.floor(r() * 2000) - 1000) },
    { name: 'i32_null', type: 'INT32', required: false, gen: () => null },
    { name: 'i64', type: 'INT64', required: true, gen: i => pick([-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n, 2n ** 53n + 1n], i, () => i64Random(r)) },
    { name: 'i64_opt', type: 'INT64', required: false, gen: i => (i % 5 === 2 ? null : i64Random(r)) },
    { name: 'i64_dict', type: 'INT64', required: true, gen: i => BigInt(i % 13) * 1000000007n - 6000000000n },
    { name: 'f32', type: 'FLOAT', required: true, gen: i => pick(F32_SPECIAL, i, () => Math.fround((r() - 0.5) * 10 ** (Math.floor(r() * 20) - 10))) },
    { name: 'f32_opt', type: 'FLOAT', required: false, gen: i => (i % 6 === 0 ? null : i % 97 === 5 ? nonFinite[i % 3] : Math.fround(r() * 100)) },
    { name: 'f64', type: 'DOUBLE', required: true, gen: i => pick(F64_SPECIAL, i, () => (r() - 0.5) * 10 ** (Math.floor(r() * 40) - 20)) },
    { name: 'f64_opt', type: 'DOUBLE', required: false, gen: i => (i % 5 === 0 ? null : i % 89 === 3 ? nonFinite[i % 3] : r() * 1e6) },
    { name: 'f64_dict', type: 'DOUBLE', required: true, gen: i => [0.5, -1.25, 1 / 7, 1e100, 3][i % 5] },
    { name: 's_dict', type: 'STRING', required: true, gen: i => AWKWARD[i % AWKWARD.length] },
    { name: 's_opt', type: 'STRING', required: false, gen: i => (i % 4 === 0 ? null : AWKWARD[(i * 7) % AWKWARD.length]) },
    { name: 's_plain', type: 'STRING', required: true, gen: i => `row ${i} ${hex(r)}${i % 10 === 0 ? AWKWARD[(i / 10) % AWKWARD.length] : ''}` },
    // Few distinct values in the first row group(s), all distinct later: the
    // writers keep a dictionary for the first chunk and fall back to plain after.
    { name: 's_fallback', type: 'STRING', required: true, gen: i => (i < DUCK_ROW_GROUP ? `k${i % 10}` : `u${i}-${hex(r)}`) },
    // One distinct value: hyparquet-writer writes its dictionary indexes with bit width 0.
    { name: 's_const', type: 'STRING', required: true, gen: () => 'constant, "quoted"' },
    // Long runs of NULLs: whole pages without a value.
    { name: 's_sparse', type: 'STRING', required: false, gen: i => (i < 1200 || i % 3 === 0 ? null : `v${i % 50}`) },
  ]
}

function makeRows(columns, n) {
  const rows = []
  for (let i = 0; i < n; i++) rows.push(columns.map(c => c.gen(i)))
  return rows
}

const COLUMNS = sourceColumns()
const ROWS_DATA = makeRows(COLUMNS, ROWS)

// ---------------------------------------------------------------------------
// Writers

const DUCK_TYPE = { BOOLEAN: 'BOOLEAN', INT32: 'INTEGER', INT64: 'BIGINT', FLOAT: 'FLOAT', DOUBLE: 'DOUBLE', STRING: 'VARCHAR' }

// Loads rows into a DuckDB table through the appender (no SQL literals, so
// NaN, -0 and awkward strings arrive exactly as the JS values).
async function duckTable(name, columns, rows) {
  await duck.run(`create or replace table ${name} (${columns.map(c => `${c.name} ${DUCK_TYPE[c.type]}`).join(', ')})`)
  const appender = await duck.conn.createAppender(name)
  const types = columns.map(c => peers.duckdb[DUCK_TYPE[c.type]])
  for (let start = 0; start < rows.length; start += 2048) {
    const chunk = peers.duckdb.DuckDBDataChunk.create(types)
    const slice = rows.slice(start, start + 2048)
    chunk.setColumns(columns.map((_, j) => slice.map(row => row[j])))
    appender.appendDataChunk(chunk)
  }
  appender.closeSync()
}

async function duckWrite(file, table, options) {
  await duck.run(`copy ${table} to ${sqlStr(join(OUT, file))} (format parquet, ${options})`)
}

// hyparquet-writer compresses with what it is given: GZIP with node's zlib,
// ZSTD as stored-block frames (see zstdStored in lib.mjs).
const HYP_COMPRESSORS = { GZIP: b => gzipSync(b), ZSTD: zstdStored }

function hypWrite(file, columns, rows, { codec, encodings = {}, rowGroupSize = HYP_ROW_GROUP, pageSize = HYP_PAGE_BYTES } = {}) {
  peers.writer.parquetWriteFile({
    filename: join(OUT, file),
    codec,
    compressors: HYP_COMPRESSORS,
    rowGroupSize,
    pageSize,
    columnData: columns.map((c, j) => ({
      name: c.name,
      type: c.type,
      nullable: !c.required,
      data: rows.map(row => row[j]),
      ...(encodings[c.name] ? { encoding: encodings[c.name] } : {}),
    })),
  })
}

// ---------------------------------------------------------------------------
// Describe, verify and record one file.

const splitEncodings = s => String(s ?? '').split(/[,\s]+/).filter(Boolean)

async function record(file, { writer, columns, rows, covers = {}, readable = true, why = '' }) {
  const path = join(OUT, file)
  const census = pageCensus(peers, readArrayBuffer(path))
  const chunks = await duckChunks(duck, path)
  const schema = await duck.rows(`select name, repetition_type from parquet_schema(${sqlStr(path)}) where type is not null`)
  const encodings = {}
  for (const ch of chunks) {
    const set = (encodings[ch.path_in_schema] ??= new Set())
    for (const e of splitEncodings(ch.encodings)) set.add(e)
  }
  const dataPageTypes = new Set(census.chunks.flatMap(ch => ch.pages.filter(p => p.type !== 'DICTIONARY_PAGE').map(p => p.type)))
  const codecs = [...new Set(chunks.map(ch => ch.compression))]
  const entry = {
    file,
    writer,
    codec: codecs.join(','),
    page_version: [...dataPageTypes].map(t => (t === 'DATA_PAGE_V2' ? 'v2' : 'v1')).sort().join(','),
    rows: rows.length,
    row_groups: new Set(chunks.map(ch => ch.row_group_id)).size,
    columns: columns.map(c => ({
      name: c.name, type: c.type,
      repetition: schema.find(s => s.name === c.name)?.repetition_type,
    })),
    encodings: Object.fromEntries(Object.entries(encodings).map(([k, v]) => [k, [...v]])),
    pages: censusByColumn(census),
    readable,
  }

  // What twotower must refuse, from the pages themselves.
  const refuse = {}
  for (const ch of census.chunks) {
    if (!SUPPORTED_CODECS.has(ch.codec)) (refuse[ch.column] ??= new Set()).add(ch.codec)
    for (const p of ch.pages) if (p.type !== 'DICTIONARY_PAGE' && !SUPPORTED_ENCODINGS.has(p.encoding)) (refuse[ch.column] ??= new Set()).add(p.encoding)
  }
  if (readable) {
    entry.expected_csv = file.replace(/\.parquet$/, '.expected.csv')
    writeFileSync(join(OUT, entry.expected_csv), toCsv(columns, rows))
  } else {
    entry.expect_error = { why, columns: Object.fromEntries(Object.entries(refuse).map(([k, v]) => [k, [...v]])) }
  }

  // Both peers read back exactly the source values.
  const viaDuck = await duck.columns(`select * from read_parquet(${sqlStr(path)})`)
  const viaHyp = {}
  await peers.hyparquet.parquetRead({
    file: readArrayBuffer(path), compressors: peers.compressors,
    onComplete: data => { for (const [j, c] of columns.entries()) viaHyp[c.name] = data.map(row => row[j]) },
  })
  report.check(`peer ${file}: DuckDB and hyparquet read back the source values`,
    [...compareValues(columns, rows, viaDuck, 'DuckDB'), ...compareValues(columns, rows, viaHyp, 'hyparquet')])

  // The file covers what it was written for.
  const errors = []
  if (readable && Object.keys(refuse).length) errors.push(`meant readable but uses ${JSON.stringify(entry.expect_error ?? Object.fromEntries(Object.entries(refuse).map(([k, v]) => [k, [...v]])))}`)
  if (!readable && !Object.keys(refuse).length) errors.push('meant unsupported but every encoding and codec is supported')
  if (covers.pageVersion && entry.page_version !== covers.pageVersion) errors.push(`page version ${entry.page_version}, meant ${covers.pageVersion}`)
  if (covers.codec && entry.codec !== covers.codec) errors.push(`codec ${entry.codec}, meant ${covers.codec}`)
  if (covers.minRowGroups && entry.row_groups < covers.minRowGroups) errors.push(`${entry.row_groups} row groups, meant >= ${covers.minRowGroups}`)
  for (const col of covers.multiPage ?? []) {
    const most = Math.max(...census.chunks.filter(ch => ch.column === col).map(ch => ch.pages.filter(p => p.type !== 'DICTIONARY_PAGE').length))
    if (most < 2) errors.push(`column ${col}: no chunk has more than one data page`)
  }
  for (const col of covers.dictionary ?? []) {
    const plainChunks = census.chunks.filter(ch => ch.column === col && !ch.pages.some(p => p.type === 'DICTIONARY_PAGE'))
    if (plainChunks.length) errors.push(`column ${col}: ${plainChunks.length} chunk(s) without a dictionary page`)
  }
  for (const col of covers.dictionaryAndPlain ?? []) {
    const kinds = new Set(census.chunks.filter(ch => ch.column === col).map(ch => ch.pages.some(p => p.type === 'DICTIONARY_PAGE') ? 'dict' : 'plain'))
    if (kinds.size !== 2) errors.push(`column ${col}: chunks are only ${[...kinds]}, meant dictionary and plain`)
    const enc = encodings[col] ?? new Set()
    if (!enc.has('PLAIN') || !(enc.has('PLAIN_DICTIONARY') || enc.has('RLE_DICTIONARY'))) errors.push(`column ${col}: parquet_metadata encodings ${[...enc]}, meant a dictionary encoding and PLAIN`)
  }
  report.check(`peer ${file}: covers ${describeCovers(entry, covers)}`, errors)
  manifest.files.push(entry)
}

function describeCovers(entry, covers) {
  const parts = [`pages ${entry.page_version}`, entry.codec, `${entry.row_groups} row groups`]
  if (covers.multiPage) parts.push(`multi-page ${covers.multiPage.join('/')}`)
  if (covers.dictionaryAndPlain) parts.push(`dict+plain ${covers.dictionaryAndPlain.join('/')}`)
  if (entry.expect_error) parts.push(`refuse ${Object.entries(entry.expect_error.columns).map(([k, v]) => `${k}:${v.join('/')}`).join(' ')}`)
  return parts.join(', ')
}

const duckWriter = `duckdb ${duckVersion} (@duckdb/node-api ${peers.versions['@duckdb/node-api']})`
const hypWriter = `hyparquet-writer ${peers.versions['hyparquet-writer']}`

// ---------------------------------------------------------------------------
// The files

await duckTable('peer', COLUMNS, ROWS_DATA)
for (const codec of ['UNCOMPRESSED', 'SNAPPY', 'GZIP', 'ZSTD']) {
  const file = `duckdb_v1_${codec.toLowerCase()}.parquet`
  await report.guard(`peer ${file}`, async () => {
    // DICTIONARY_SIZE_LIMIT (distinct values per chunk) is set rather than left
    // at its default (ROW_GROUP_SIZE / 5) so the plain fallback of s_fallback
    // and the dictionary of the 20-value columns do not move with defaults.
    await duckWrite(file, 'peer', `compression ${codec}, row_group_size ${DUCK_ROW_GROUP}, dictionary_size_limit 500`)
    await record(file, {
      writer: duckWriter, columns: COLUMNS, rows: ROWS_DATA,
      covers: { pageVersion: 'v1', codec, minRowGroups: 3, dictionary: ['s_dict', 's_opt', 'i64_dict', 'f64_dict', 's_const'], dictionaryAndPlain: ['s_fallback'] },
    })
  })
}

// DuckDB's only way to several data pages in one chunk is its fixed 100 MB page
// limit: 120 strings of 1 MB give a 2-page chunk (about 120 MB of CSV, so off
// with INTEROP_LARGE=0).
if (process.env.INTEROP_LARGE !== '0') {
  const file = 'duckdb_v1_multipage_zstd.parquet'
  await report.guard(`peer ${file}`, async () => {
    const cols = [
      { name: 'id', type: 'INT64', required: true, gen: i => BigInt(i) },
      { name: 'big', type: 'STRING', required: true, gen: i => `${i},"${'abcdefghij'.repeat(99_999)}"\n${String(i).padStart(6, '0')}` },
    ]
    const rows = makeRows(cols, 120)
    await duckTable('big', cols, rows)
    await duckWrite(file, 'big', 'compression zstd, dictionary_size_limit 1')
    await record(file, { writer: duckWriter, columns: cols, rows, covers: { pageVersion: 'v1', codec: 'ZSTD', multiPage: ['big'] } })
    await duck.run('drop table big')
  })
}

const PLAIN_BOOLEANS = { flag: 'PLAIN', flag_opt: 'PLAIN' }
for (const codec of ['UNCOMPRESSED', 'SNAPPY', 'GZIP', 'ZSTD']) {
  const file = `hyparquet_v2_${codec.toLowerCase()}.parquet`
  await report.guard(`peer ${file}`, async () => {
    // Booleans PLAIN here; hyparquet-writer's default RLE booleans get a file of their own.
    hypWrite(file, COLUMNS, ROWS_DATA, { codec, encodings: PLAIN_BOOLEANS })
    await record(file, {
      writer: hypWriter, columns: COLUMNS, rows: ROWS_DATA,
      covers: {
        pageVersion: 'v2', codec, minRowGroups: 4,
        multiPage: ['id', 'i64', 'f64', 's_plain', 's_dict', 's_sparse'],
        dictionary: ['s_dict', 's_const'], dictionaryAndPlain: ['s_fallback'],
      },
    })
  })
}

{
  const file = 'hyparquet_v2_bool_rle_snappy.parquet'
  await report.guard(`peer ${file}`, async () => {
    const cols = COLUMNS.filter(c => ['id', 'flag', 'flag_opt'].includes(c.name))
    const idx = cols.map(c => COLUMNS.indexOf(c))
    const rows = ROWS_DATA.map(row => idx.map(j => row[j]))
    hypWrite(file, cols, rows, { codec: 'SNAPPY' }) // default: RLE for BOOLEAN values
    await record(file, { writer: hypWriter, columns: cols, rows, covers: { pageVersion: 'v2', codec: 'SNAPPY' } })
    const enc = manifest.files.at(-1).encodings.flag ?? []
    report.check(`peer ${file}: BOOLEAN values are RLE-encoded`, enc.includes('RLE') ? [] : [`flag encodings ${enc}`])
  })
}

// DuckDB's PARQUET_VERSION V2 keeps v1 page headers but switches to DELTA_BINARY_PACKED (ints),
// BYTE_STREAM_SPLIT (floats) and DELTA_LENGTH_BYTE_ARRAY (strings).
{
  const file = 'duckdb_v2encodings_snappy.parquet'
  await report.guard(`peer ${file}`, async () => {
    await duckWrite(file, 'peer', `compression snappy, row_group_size ${DUCK_ROW_GROUP}, parquet_version v2`)
    await record(file, { writer: duckWriter, columns: COLUMNS, rows: ROWS_DATA, covers: { codec: 'SNAPPY', minRowGroups: 3 } })
    const enc = new Set(Object.values(manifest.files.at(-1).encodings).flat())
    const missing = ['DELTA_BINARY_PACKED', 'BYTE_STREAM_SPLIT', 'DELTA_LENGTH_BYTE_ARRAY'].filter(e => !enc.has(e))
    report.check(`peer ${file}: uses the V2 encodings`, missing.map(e => `no ${e}`))
  })
}

// Files twotower must refuse, naming the column and the codec.
{
  const file = 'unsupported_duckdb_lz4_raw.parquet'
  await report.guard(`peer ${file}`, async () => {
    const cols = COLUMNS.filter(c => ['id', 's_dict'].includes(c.name))
    await duck.run('create or replace table small as select id, s_dict from peer')
    await duckWrite(file, 'small', 'compression lz4_raw')
    const idx = cols.map(c => COLUMNS.indexOf(c))
    await record(file, { writer: duckWriter, columns: cols, rows: ROWS_DATA.map(row => idx.map(j => row[j])), readable: false, why: 'codec LZ4_RAW' })
  })
}
for (const [encoding, col] of [
  ['DELTA_BINARY_PACKED', { name: 'n_delta', type: 'INT64', required: true, gen: i => BigInt(i * i) - 7n }],
  ['DELTA_LENGTH_BYTE_ARRAY', { name: 's_delta_len', type: 'STRING', required: true, gen: i => AWKWARD[i % AWKWARD.length] + i }],
  ['DELTA_BYTE_ARRAY', { name: 's_delta', type: 'STRING', required: false, gen: i => (i % 9 ? `prefix-${i}` : null) }],
  ['BYTE_STREAM_SPLIT', { name: 'x_split', type: 'DOUBLE', required: true, gen: i => i / 7 }],
]) {
  const file = `hyparquet_v2_${encoding.toLowerCase()}.parquet`
  await report.guard(`peer ${file}`, async () => {
    const cols = [{ name: 'ok_id', type: 'INT64', required: true, gen: i => BigInt(i) }, col]
    const rows = makeRows(cols, 3000)
    hypWrite(file, cols, rows, { codec: 'SNAPPY', encodings: { [col.name]: encoding } })
    await record(file, { writer: hypWriter, columns: cols, rows, covers: { pageVersion: 'v2', codec: 'SNAPPY' } })
    const enc = manifest.files.at(-1).encodings[col.name] ?? []
    report.check(`peer ${file}: column ${col.name} is ${encoding}`, enc.includes(encoding) ? [] : [`encodings ${enc}`])
  })
}

writeFileSync(join(OUT, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n')
duck.close()
report.finish()
