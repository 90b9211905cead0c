// Checks twotower's Parquet against independent readers, both ways:
//  1. CSV -> Parquet: twotower converts a CSV made here, once per codec; DuckDB
//     and hyparquet must read back the source values, and the file must have the
//     promised types, nullability, row groups, codec, statistics, created_by and
//     v1 data pages. Two more sources: quoted cells with line breaks, and a chunk
//     big enough for the writer to fall back from dictionary to plain pages. The
//     snappy and fallback files are converted back to CSV (round trip).
//  2. Parquet -> CSV: every readable file of write_peer_files.mjs must convert
//     to its NAME.expected.csv; every unsupported one must be refused with an
//     error that names a bad column and its encoding (or codec).
//
//   node check_twotower_files.mjs TWOTOWER PEER_DIR WORK_DIR
//
// INTEROP_ONLY=csv or INTEROP_ONLY=peers runs one half.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import {
  AWKWARD, Report, compareCsv, compareValues, duckChunks, loadPeers, openDuck, pageCensus, readArrayBuffer,
  rng, show, sqlStr, toCsv,
} from './lib.mjs'

const [TWOTOWER, PEER_DIR, WORK] = process.argv.slice(2)
if (!TWOTOWER || !PEER_DIR || !WORK) {
  console.error('usage: node check_twotower_files.mjs TWOTOWER PEER_DIR WORK_DIR')
  process.exit(2)
}
const ONLY = process.env.INTEROP_ONLY ?? ''
rmSync(WORK, { recursive: true, force: true })
mkdirSync(WORK, { recursive: true })

const report = new Report()

function twotower(args) {
  const r = spawnSync(TWOTOWER, args, { encoding: 'utf8', timeout: 300_000, maxBuffer: 64 << 20 })
  return { status: r.status, signal: r.signal, error: r.error, stdout: r.stdout ?? '', stderr: r.stderr ?? '' }
}
const ranOk = r => r.status === 0
const whyNot = r => (r.error ? String(r.error.message) : r.signal ? `killed by ${r.signal}` : `exit ${r.status}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`)

const probe = twotower(['convert', '--help'])
if (!ranOk(probe)) {
  report.fail(`${basename(TWOTOWER)} convert --help`, `twotower convert is not available (${whyNot(probe)})`)
  report.finish()
  process.exit()
}

const peers = await loadPeers()
const duck = await openDuck(peers.duckdb)

// ---------------------------------------------------------------------------
// 1. CSV -> Parquet

const ROWS = 5000
const RG = 700
const CODECS = { snappy: 'SNAPPY', zstd: 'ZSTD', gzip: 'GZIP', none: 'UNCOMPRESSED' }

// Each column: the CSV text of row i ('' = empty cell) and the type twotower
// must infer. The JS value twotower must store is derived from the text.
function csvColumns() {
  const r = rng(777)
  const u64 = () => BigInt.asIntN(64, (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32)))
  // A DOUBLE cell is text twotower writes back as it is (NumberText): JavaScript's layout, except
  // that an integral value below 1e21 is printed in full, which String() gives only below 2^53.
  // Values in [2^53, 1e21) would be such integers; they are scaled down out of that range.
  const dbl = () => {
    const x = (r() - 0.5) * 10 ** (Math.floor(r() * 60) - 30)
    return Math.abs(x) >= 2 ** 53 && Math.abs(x) < 1e21 ? x / 1e6 + 0.5 : x
  }
  const pick = (specials, i, other) => String(i < specials.length ? specials[i] : other())
  // An empty cell would be a NULL; line breaks inside quoted cells get a file of
  // their own (src_multiline.csv), so that a reader without them still meets the rest.
  const noEmpty = AWKWARD.filter(s => s !== '' && !/[\r\n]/.test(s))
  return [
    { name: 'id', type: 'INT64', required: true, text: i => String(i) },
    { name: 'big', type: 'INT64', required: true, text: i => pick([-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n], i, u64) },
    { name: 'opt_int', type: 'INT64', required: false, text: i => (i % 7 === 3 ? '' : String(Math.floor(r() * 1e6) - 5e5)) },
    { name: 'dbl', type: 'DOUBLE', required: true, text: i => pick(['0.1', '-0', '5e-324', '1.7976931348623157e+308', '1e+21', '1e-7', '-2.5', '100', '9007199254740994', '0.30000000000000004'], i, dbl) },
    { name: 'dbl_opt', type: 'DOUBLE', required: false, text: i => (i % 5 === 1 ? '' : String(r() * 1000)) },
    // integers in every row but the last: type inference must read all rows
    { name: 'int_then_dbl', type: 'DOUBLE', required: true, text: i => (i === ROWS - 1 ? '2.5' : String(i * 3)) },
    // 2^63 does not fit an INT64, so the column is DOUBLE
    { name: 'overflow', type: 'DOUBLE', required: true, text: i => (i === 3 ? '9223372036854775808' : String(i)) },
    { name: 's_low', type: 'STRING', required: true, text: i => noEmpty[i % noEmpty.length] },
    { name: 's_unique', type: 'STRING', required: true, text: i => `${i}:${Math.floor(r() * 2 ** 32).toString(36)}${i % 11 === 0 ? noEmpty[i % noEmpty.length] : ''}` },
    { name: 's_opt', type: 'STRING', required: false, text: i => (i % 4 === 2 ? '' : noEmpty[(i * 3) % noEmpty.length]) },
    // number-like text kept as written, forced to STRING by the last row
    { name: 's_numlike', type: 'STRING', required: true, text: i => (i === ROWS - 1 ? 'abc' : ['007', '1.50', '1e3', '-0', '12'][i % 5]) },
    // not finite, so not DOUBLE
    { name: 's_nanlike', type: 'STRING', required: true, text: i => ['nan', 'inf', '-inf', '1.5', '2'][i % 5] },
  ]
}

// Many chunks failing the same way read better as one line with a count.
function summarize(errors, keep = 6) {
  const byKind = new Map()
  for (const e of errors) {
    const kind = e.replace(/^row group \d+ \S+: /, '').replace(/\d+/g, '#')
    const k = byKind.get(kind) ?? byKind.set(kind, { first: e, n: 0 }).get(kind)
    k.n++
  }
  const lines = [...byKind.values()].map(k => (k.n > 1 ? `${k.first} (and ${k.n - 1} more like it)` : k.first))
  return lines.length > keep ? [...lines.slice(0, keep), `... ${lines.length - keep} more kinds of error`] : lines
}

const valueOf = (type, text) => (text === '' ? null : type === 'INT64' ? BigInt(text) : type === 'DOUBLE' ? Number(text) : text)

// Statistics the file must carry for one column chunk, computed here.
function chunkStats(type, values) {
  let min, max, nulls = 0
  const less = type === 'STRING' ? (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)) < 0 : (a, b) => a < b
  for (const v of values) {
    if (v === null) { nulls++; continue }
    if (min === undefined || less(v, min)) min = v
    if (max === undefined || less(max, v)) max = v
  }
  return { min, max, nulls }
}

function statEqual(type, got, want) {
  if (want === undefined) return got === null || got === undefined
  if (got === null || got === undefined) return false
  if (type === 'INT64') return BigInt(got) === want
  if (type === 'DOUBLE') return Number(got) === want // -0 and 0 are equal bounds
  return got === want
}

async function checkCsvToParquet() {
  const cols = csvColumns()
  const texts = []
  for (let i = 0; i < ROWS; i++) texts.push(cols.map(c => c.text(i)))
  // src.csv: the STRING rule quotes exactly what needs quoting; numbers are plain text
  const srcCsv = toCsv(cols.map(c => ({ ...c, type: 'STRING' })), texts)
  const src = join(WORK, 'src.csv')
  writeFileSync(src, srcCsv)
  const rows = texts.map(t => t.map((s, j) => valueOf(cols[j].type, s)))

  for (const [codec, CODEC] of Object.entries(CODECS)) {
    const file = `out_${codec}.parquet`
    const out = join(WORK, file)
    const run = twotower(['convert', src, out, '--compression', codec, '--row-group-rows', String(RG)])
    if (!ranOk(run) || !existsSync(out)) { report.fail(`convert src.csv -> ${file}`, whyNot(run)); continue }
    report.pass(`convert src.csv -> ${file}`)
    await report.guard(`${file}`, () => checkTwotowerParquet(file, out, CODEC, cols, rows))
  }

  // Quoted cells with LF, CR and CR LF inside (RFC 4180), as twotower's own
  // Parquet->CSV output has them.
  {
    const breaks = AWKWARD.filter(t => /[\r\n]/.test(t))
    const mcols = [
      { name: 'id', type: 'INT64', required: true },
      { name: 's_break', type: 'STRING', required: true },
      { name: 's_break_opt', type: 'STRING', required: false },
    ]
    const mtexts = []
    for (let i = 0; i < 1000; i++) mtexts.push([String(i), breaks[i % breaks.length], i % 3 ? `${breaks[(i + 1) % breaks.length]}${i}` : ''])
    const msrc = join(WORK, 'src_multiline.csv')
    writeFileSync(msrc, toCsv(mcols.map(c => ({ ...c, type: 'STRING' })), mtexts))
    const mout = join(WORK, 'out_multiline.parquet')
    const name = 'convert src_multiline.csv (LF, CR, CR LF inside quoted cells) -> Parquet: values read by DuckDB'
    const run = twotower(['convert', msrc, mout, '--row-group-rows', String(RG)])
    if (!ranOk(run) || !existsSync(mout)) report.fail(name, whyNot(run))
    else {
      const mrows = mtexts.map(t => t.map((x, j) => valueOf(mcols[j].type, x)))
      report.check(name, compareValues(mcols, mrows, await duck.columns(`select * from read_parquet(${sqlStr(mout)})`), 'DuckDB'))
    }
  }

  // Dictionary fallback inside one chunk. Sized for twotower's writer defaults
  // (data pages of 65,536 rows, string dictionaries up to 1 MiB): s_fallback has
  // 100 values on the first page and distinct ones after, s_nodict is too varied
  // for a dictionary on its first page already.
  {
    const fr = rng(99)
    const n = 140_000
    const fcols = [
      { name: 'id', type: 'INT64', required: true, text: i => String(i) },
      { name: 's_low', type: 'STRING', required: true, text: i => `low ${i % 7}` },
      { name: 's_fallback', type: 'STRING', required: true, text: i => (i < 65_536 ? `k${i % 100}` : `u${i}-${Math.floor(fr() * 2 ** 32).toString(16)}`) },
      { name: 's_nodict', type: 'STRING', required: false, text: i => (i % 10 === 4 ? '' : `${i}:${Math.floor(fr() * 2 ** 32).toString(16)}${Math.floor(fr() * 2 ** 32).toString(16)}`) },
    ]
    const ftexts = []
    for (let i = 0; i < n; i++) ftexts.push(fcols.map(c => c.text(i)))
    const fsrcText = toCsv(fcols.map(c => ({ ...c, type: 'STRING' })), ftexts)
    const fsrc = join(WORK, 'src_fallback.csv')
    writeFileSync(fsrc, fsrcText)
    const file = 'out_fallback.parquet'
    const fout = join(WORK, file)
    const run = twotower(['convert', fsrc, fout, '--compression', 'zstd'])
    if (!ranOk(run) || !existsSync(fout)) report.fail(`convert src_fallback.csv -> ${file}`, whyNot(run))
    else {
      report.pass(`convert src_fallback.csv -> ${file}`)
      const frows = ftexts.map(t => t.map((x, j) => valueOf(fcols[j].type, x)))
      report.check(`${file}: values read by DuckDB`, compareValues(fcols, frows, await duck.columns(`select * from read_parquet(${sqlStr(fout)})`), 'DuckDB'))
      const ab = readArrayBuffer(fout)
      const viaHyp = {}
      await peers.hyparquet.parquetRead({
        file: ab, compressors: peers.compressors,
        onComplete: data => { for (const [j, c] of fcols.entries()) viaHyp[c.name] = data.map(row => row[j]) },
      })
      report.check(`${file}: values read by hyparquet`, compareValues(fcols, frows, viaHyp, 'hyparquet'))
      checkPages(file, ab, { s_low: 'dict', s_fallback: 'dict+plain', s_nodict: 'plain' })
      const back = join(WORK, 'roundtrip_fallback.csv')
      const r2 = twotower(['convert', fout, back])
      if (!ranOk(r2)) report.fail(`round trip ${file} -> CSV`, whyNot(r2))
      else report.check(`round trip ${file} -> CSV equals src_fallback.csv`, compareCsv(fsrcText, readFileSync(back, 'utf8'), fcols).errors)
    }
  }

  // Round trip through twotower's own reader.
  const back = join(WORK, 'roundtrip.csv')
  if (existsSync(join(WORK, 'out_snappy.parquet'))) {
    const run = twotower(['convert', join(WORK, 'out_snappy.parquet'), back])
    if (!ranOk(run)) report.fail('round trip out_snappy.parquet -> CSV', whyNot(run))
    else {
      const { errors, notes } = compareCsv(srcCsv, readFileSync(back, 'utf8'), cols)
      report.check('round trip out_snappy.parquet -> CSV equals src.csv', errors)
      notes.forEach(n => report.note(n))
    }
  }
}

async function checkTwotowerParquet(file, path, CODEC, cols, rows) {
  const ab = readArrayBuffer(path)
  const md = peers.hyparquet.parquetMetadata(ab)

  // Types and nullability, as DuckDB and hyparquet see the schema.
  {
    const errors = []
    const halfAnnotated = new Set()
    const duckSchema = await duck.rows(`select name, type, converted_type, logical_type, repetition_type from parquet_schema(${sqlStr(path)}) where type is not null`)
    const hypSchema = md.schema.slice(1)
    if (duckSchema.length !== cols.length) errors.push(`${duckSchema.length} columns, expected ${cols.length}`)
    for (const [j, c] of cols.entries()) {
      const d = duckSchema[j], h = hypSchema[j]
      if (!d || !h) continue
      if (d.name !== c.name || h.name !== c.name) { errors.push(`column ${j} named ${d.name}/${h.name}, expected ${c.name}`); continue }
      const wantType = c.type === 'STRING' ? 'BYTE_ARRAY' : c.type
      if (d.type !== wantType || h.type !== wantType) errors.push(`${c.name}: physical type ${d.type} (DuckDB) / ${h.type} (hyparquet), expected ${wantType}`)
      const rep = c.required ? 'REQUIRED' : 'OPTIONAL'
      if (d.repetition_type !== rep || h.repetition_type !== rep) errors.push(`${c.name}: ${d.repetition_type}/${h.repetition_type}, expected ${rep}`)
      if (c.type === 'STRING') {
        const utf8 = h.converted_type === 'UTF8', logical = h.logical_type?.type === 'STRING'
        if (!utf8 && !logical) errors.push(`${c.name}: BYTE_ARRAY without UTF8 converted type or STRING logical type`)
        else if (!utf8 || !logical) halfAnnotated.add(utf8 ? 'converted_type UTF8 without logical type STRING' : 'logical type STRING without converted_type UTF8')
      }
      if (c.type === 'INT64' && h.logical_type && !(h.logical_type.type === 'INTEGER' && h.logical_type.bitWidth === 64 && h.logical_type.isSigned)) {
        errors.push(`${c.name}: logical type ${JSON.stringify(h.logical_type)} on INT64`)
      }
    }
    report.check(`${file}: types and nullability`, errors, cols.map(c => `${c.name}:${c.type}${c.required ? '' : '?'}`).join(' '))
    for (const h of halfAnnotated) report.note(`${file}: string columns have ${h} (readers accept either)`)
  }

  // Values, through both readers.
  {
    const viaDuck = await duck.columns(`select * from read_parquet(${sqlStr(path)})`)
    report.check(`${file}: values read by DuckDB`, compareValues(cols, rows, viaDuck, 'DuckDB'))
    const viaHyp = {}
    await peers.hyparquet.parquetRead({
      file: ab, compressors: peers.compressors,
      onComplete: data => { for (const [j, c] of cols.entries()) viaHyp[c.name] = data.map(row => row[j]) },
    })
    report.check(`${file}: values read by hyparquet`, compareValues(cols, rows, viaHyp, 'hyparquet'))
  }

  const chunks = await duckChunks(duck, path)
  const fileMeta = (await duck.rows(`select created_by, num_rows, num_row_groups from parquet_file_metadata(${sqlStr(path)})`))[0]

  // Row groups of --row-group-rows rows, the last one shorter.
  {
    const want = []
    for (let s = 0; s < ROWS; s += RG) want.push(Math.min(RG, ROWS - s))
    const got = md.row_groups.map(rg => Number(rg.num_rows))
    const errors = []
    if (Number(fileMeta.num_rows) !== ROWS) errors.push(`num_rows ${fileMeta.num_rows}, expected ${ROWS}`)
    if (got.join() !== want.join()) errors.push(`row groups of ${got.join(',')} rows, expected ${want.join(',')}`)
    for (const ch of chunks) if (Number(ch.num_values) !== Number(ch.row_group_num_rows)) errors.push(`row group ${ch.row_group_id} ${ch.path_in_schema}: num_values ${ch.num_values} of ${ch.row_group_num_rows} rows`)
    report.check(`${file}: ${want.length} row groups of ${RG} rows`, errors.slice(0, 6))
  }

  // Codec of every column chunk.
  {
    const wrong = chunks.filter(ch => ch.compression !== CODEC)
    report.check(`${file}: codec ${CODEC} in every column chunk`, wrong.slice(0, 4).map(ch => `row group ${ch.row_group_id} ${ch.path_in_schema}: ${ch.compression}`))
  }

  // Statistics of every chunk, as DuckDB and hyparquet decode them.
  {
    const errors = []
    for (const ch of chunks) {
      const j = Number(ch.column_id)
      const c = cols[j]
      const g = Number(ch.row_group_id)
      const want = chunkStats(c.type, rows.slice(g * RG, (g + 1) * RG).map(row => row[j]))
      const hs = md.row_groups[g].columns[j].meta_data.statistics ?? {}
      const at = `row group ${g} ${c.name}`
      if (ch.stats_null_count === null || Number(ch.stats_null_count) !== want.nulls) errors.push(`${at}: null_count ${ch.stats_null_count}, expected ${want.nulls}`)
      if (!statEqual(c.type, ch.stats_min_value, want.min)) errors.push(`${at}: min_value ${show(ch.stats_min_value)} (DuckDB), expected ${show(want.min)}`)
      if (!statEqual(c.type, ch.stats_max_value, want.max)) errors.push(`${at}: max_value ${show(ch.stats_max_value)} (DuckDB), expected ${show(want.max)}`)
      if (!statEqual(c.type, hs.min_value, want.min)) errors.push(`${at}: min_value ${show(hs.min_value)} (hyparquet), expected ${show(want.min)}`)
      if (!statEqual(c.type, hs.max_value, want.max)) errors.push(`${at}: max_value ${show(hs.max_value)} (hyparquet), expected ${show(want.max)}`)
    }
    report.check(`${file}: statistics (null_count, min_value, max_value) of every chunk`, summarize(errors))
  }

  report.check(`${file}: created_by starts with twotower`, String(fileMeta.created_by ?? '').startsWith('twotower') ? [] : [`created_by ${show(fileMeta.created_by)}`], fileMeta.created_by)

  checkPages(file, ab, { s_low: 'dict' })
}

const isDictEncoding = e => e === 'RLE_DICTIONARY' || e === 'PLAIN_DICTIONARY'

// Pages: v1 data pages; every page's encoding listed in the chunk's encodings;
// a dictionary page exactly where dictionary_page_offset says; and per column
// of `layout` the promised dictionary use: 'dict' (dictionary only), 'plain'
// (no dictionary), 'dict+plain' (a chunk that falls back: dictionary-encoded
// pages, then PLAIN pages).
function checkPages(file, ab, layout) {
  const census = pageCensus(peers, ab)
  const errors = []
  const seen = {}
  for (const ch of census.chunks) {
    const at = `row group ${ch.rowGroup} ${ch.column}`
    const data = ch.pages.filter(p => p.type !== 'DICTIONARY_PAGE')
    const dict = ch.pages.filter(p => p.type === 'DICTIONARY_PAGE')
    for (const p of data) if (p.type !== 'DATA_PAGE') errors.push(`${at}: ${p.type} page, expected DATA_PAGE (v1)`)
    for (const p of ch.pages) if (!ch.encodings.includes(p.encoding)) errors.push(`${at}: page encoding ${p.encoding} missing from column chunk encodings [${ch.encodings}]`)
    if (dict.length > 1) errors.push(`${at}: ${dict.length} dictionary pages`)
    if (dict.length && ch.pages[0].type !== 'DICTIONARY_PAGE') errors.push(`${at}: dictionary page is not the first page`)
    if ((dict.length > 0) !== ch.hasDictionaryOffset) errors.push(`${at}: dictionary_page_offset ${ch.hasDictionaryOffset ? 'set' : 'unset'} but ${dict.length} dictionary pages`)
    if (dict.length && !data.some(p => isDictEncoding(p.encoding))) errors.push(`${at}: a dictionary page but no dictionary-encoded data page`)
    const firstPlain = data.findIndex(p => !isDictEncoding(p.encoding))
    if (firstPlain >= 0 && data.slice(firstPlain).some(p => isDictEncoding(p.encoding))) errors.push(`${at}: dictionary-encoded pages after plain ones`)
    const kind = !dict.length ? 'plain' : firstPlain < 0 ? 'dict' : 'dict+plain'
    ;(seen[ch.column] ??= new Set()).add(kind)
    const want = layout[ch.column]
    if (want && want !== 'dict+plain' && kind !== want) errors.push(`${at}: ${kind} pages, expected ${want}`)
  }
  for (const [col, want] of Object.entries(layout)) {
    if (want === 'dict+plain' && !seen[col]?.has('dict+plain')) errors.push(`${col}: no chunk falls back from dictionary to plain pages (chunks are ${[...(seen[col] ?? [])]})`)
  }
  const detail = Object.entries(seen).filter(([k]) => k.startsWith('s_')).map(([k, v]) => `${k}:${[...v].join('/')}`).join(' ')
  report.check(`${file}: v1 data pages, encodings listed, ${Object.entries(layout).map(([k, v]) => `${k} ${v}`).join(', ')}`, summarize(errors), detail)
}

// ---------------------------------------------------------------------------
// 2. Parquet (peer writers) -> CSV

const wordIn = (text, word) => new RegExp(`(^|[^A-Za-z0-9_])${word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}([^A-Za-z0-9_]|$)`).test(text)

function checkPeerFiles() {
  const manifestPath = join(PEER_DIR, 'manifest.json')
  if (!existsSync(manifestPath)) { report.fail('peer files', `no ${manifestPath} (run write_peer_files.mjs first)`); return }
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'))
  const outDir = join(WORK, 'peer_out')
  mkdirSync(outDir, { recursive: true })
  for (const f of manifest.files) {
    const input = join(PEER_DIR, f.file)
    const out = join(outDir, f.file.replace(/\.parquet$/, '.out.csv'))
    const run = twotower(['convert', input, out])
    if (f.readable) {
      const name = `peer ${f.file} (${f.writer.split(' ')[0]}, ${f.codec}, pages ${f.page_version}) -> CSV equals expected`
      if (!ranOk(run)) { report.fail(name, whyNot(run)); continue }
      const { errors, notes } = compareCsv(readFileSync(join(PEER_DIR, f.expected_csv), 'utf8'), readFileSync(out, 'utf8'), f.columns)
      report.check(name, errors)
      notes.forEach(n => report.note(`${f.file}: ${n}`))
      rmSync(out, { force: true }) // the large one is 120 MB
    } else {
      const bad = Object.entries(f.expect_error.columns)
      const name = `peer ${f.file} refused, naming a column and its ${f.expect_error.why}`
      const errors = []
      if (run.status === 0) errors.push('exit 0: twotower accepted the file')
      else if (run.status === null) errors.push(whyNot(run))
      else {
        const err = run.stderr
        const named = bad.some(([col, encs]) => wordIn(err, col) && encs.some(e => err.toUpperCase().includes(e.toUpperCase())))
        if (!named) errors.push(`stderr names none of ${bad.map(([c, e]) => `${c} with ${e.join('/')}`).slice(0, 4).join(', ')}: ${JSON.stringify(err.trim().slice(0, 300))}`)
      }
      report.check(name, errors)
      if (existsSync(out)) report.note(`${f.file}: a refused conversion left ${basename(out)} behind`)
    }
  }
}

if (ONLY !== 'peers') await checkCsvToParquet()
if (ONLY !== 'csv') checkPeerFiles()
duck.close()
report.finish()
