// Shared pieces of the Parquet interop harness: loading the peer packages from
// NPM_DIR, the exact Parquet->CSV text format twotower promises, a strict CSV
// comparer, a page-by-page census of a Parquet file, and PASS/FAIL reporting.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

export const HERE = dirname(fileURLToPath(import.meta.url))
export const REPO_ROOT = resolve(HERE, '../..')
// The packages live outside the source tree (build/ is git-ignored), so they
// are resolved from NPM_DIR rather than by Node's usual lookup next to the file.
export const NPM_DIR = resolve(process.env.NPM_DIR || join(REPO_ROOT, 'build/interop-npm'))

const requireFromNpmDir = createRequire(join(NPM_DIR, 'noop.js'))
const importPeer = spec => import(pathToFileURL(requireFromNpmDir.resolve(spec)).href)

export async function loadPeers() {
  const [duckdb, hyparquet, column, compressors, writer] = await Promise.all([
    importPeer('@duckdb/node-api'),
    importPeer('hyparquet'),
    importPeer('hyparquet/src/column.js'),
    importPeer('hyparquet-compressors'),
    importPeer('hyparquet-writer'),
  ])
  const version = name => JSON.parse(readFileSync(join(NPM_DIR, 'node_modules', name, 'package.json'), 'utf8')).version
  return {
    duckdb,
    hyparquet,
    parquetHeader: column.parquetHeader,
    compressors: compressors.compressors,
    writer,
    versions: Object.fromEntries(['@duckdb/node-api', 'hyparquet', 'hyparquet-writer', 'hyparquet-compressors'].map(n => [n, version(n)])),
  }
}

// ---------------------------------------------------------------------------
// DuckDB

export const sqlStr = s => `'${String(s).replaceAll("'", "''")}'`

// One in-memory DuckDB on one thread: row order of scans is then the file order,
// and the harness does not compete with a compiler for the 2 cores.
export async function openDuck(duckdb) {
  const instance = await duckdb.DuckDBInstance.create(':memory:', { threads: '1' })
  const conn = await instance.connect()
  return {
    conn,
    rows: async sql => (await conn.runAndReadAll(sql)).getRowObjectsJS(),
    columns: async sql => (await conn.runAndReadAll(sql)).getColumnsObjectJS(),
    run: sql => conn.run(sql),
    close: () => { conn.closeSync(); instance.closeSync?.() },
  }
}

// parquet_metadata() flattened per column chunk, in file order.
export async function duckChunks(duck, path) {
  return duck.rows(`select row_group_id, row_group_num_rows, column_id, path_in_schema, type, num_values,
      compression, encodings, dictionary_page_offset, stats_null_count, stats_min_value, stats_max_value,
      min_is_exact, max_is_exact
    from parquet_metadata(${sqlStr(path)}) order by row_group_id, column_id`)
}

// ---------------------------------------------------------------------------
// Values and their CSV text

export const FLOAT_TYPES = new Set(['FLOAT', 'DOUBLE'])

// Shortest decimal that reads back as the same float32 (what std::to_chars on a
// float prints, up to layout). JS only has the double version built in.
export function shortestFloat32(v) {
  const f = Math.fround(v)
  for (let p = 1; p <= 9; p++) {
    const s = String(Number(f.toPrecision(p)))
    if (Math.fround(Number(s)) === f) return s
  }
  return String(f)
}

export function formatNumber(type, v) {
  if (Number.isNaN(v)) return 'nan'
  if (v === Infinity) return 'inf'
  if (v === -Infinity) return '-inf'
  if (Object.is(v, -0)) return '-0'
  return type === 'FLOAT' ? shortestFloat32(v) : String(v) // String(double) is shortest round-trip
}

// twotower's CSV writer quotes a comma, quote or line break, and blanks at either end (which an
// unquoted field at the end of a line would lose).
export const csvQuote = s => (/[",\r\n]|^[ \t]|[ \t]$/.test(s) ? `"${s.replaceAll('"', '""')}"` : s)

// One cell in twotower's Parquet->CSV format; NULL (and the empty string) is an empty field.
export function formatCell(type, v) {
  if (v === null || v === undefined) return ''
  switch (type) {
    case 'BOOLEAN': return v ? 'true' : 'false'
    case 'INT32': case 'INT64': return String(v)
    case 'FLOAT': case 'DOUBLE': return formatNumber(type, v)
    case 'STRING': return csvQuote(v)
    default: throw new Error(`no CSV format for type ${type}`)
  }
}

export function toCsv(columns, rows) {
  const lines = [columns.map(c => csvQuote(c.name)).join(',')]
  for (const row of rows) lines.push(columns.map((c, j) => formatCell(c.type, row[j])).join(','))
  return lines.join('\n') + '\n'
}

// Equality of one value as read back by a peer reader: exact, with NaN equal to
// NaN, -0 distinct from 0, FLOAT compared at float32 precision, ints as BigInt.
export function sameValue(type, a, b) {
  if (a === null || a === undefined || b === null || b === undefined) return (a ?? null) === (b ?? null)
  switch (type) {
    case 'INT32': case 'INT64': return BigInt(a) === BigInt(b)
    case 'FLOAT': return Object.is(Math.fround(a), Math.fround(b))
    case 'DOUBLE': return Object.is(a, b)
    default: return a === b
  }
}

export const show = v => (typeof v === 'string' ? JSON.stringify(v) : typeof v === 'bigint' ? `${v}n` : Object.is(v, -0) ? '-0' : String(v))

// Compare columns of values (arrays by column name) against the source rows.
export function compareValues(columns, rows, got, label) {
  const errors = []
  for (const [j, c] of columns.entries()) {
    const col = got[c.name]
    if (!col) { errors.push(`${label}: column ${c.name} missing`); continue }
    if (col.length !== rows.length) { errors.push(`${label}: column ${c.name} has ${col.length} values, expected ${rows.length}`); continue }
    let bad = 0
    for (let i = 0; i < rows.length; i++) {
      if (sameValue(c.type, rows[i][j], col[i])) continue
      if (bad++ < 3) errors.push(`${label}: ${c.name} row ${i}: got ${show(col[i])}, expected ${show(rows[i][j])}`)
    }
    if (bad > 3) errors.push(`${label}: ${c.name}: ${bad} mismatching rows in all`)
  }
  return errors
}

// ---------------------------------------------------------------------------
// Strict CSV reading (RFC 4180 with LF record ends, every record LF-terminated)

export function parseCsv(text) {
  const records = []
  let fields = []
  let i = 0
  const n = text.length
  if (n === 0) return { records, error: 'empty file' }
  for (;;) {
    let raw, value
    if (text[i] === '"') {
      // Quoted field: "" is a quote; the field must end at a comma or LF.
      let j = i + 1
      let parts = []
      for (;;) {
        const q = text.indexOf('"', j)
        if (q < 0) return { records, error: `unterminated quoted field in record ${records.length + 1}` }
        parts.push(text.slice(j, q))
        if (text[q + 1] === '"') { parts.push('"'); j = q + 2; continue }
        j = q + 1
        break
      }
      raw = text.slice(i, j)
      value = parts.join('')
      i = j
      if (i < n && text[i] !== ',' && text[i] !== '\n') {
        return { records, error: `text after closing quote in record ${records.length + 1}` }
      }
    } else {
      let j = i
      while (j < n && text[j] !== ',' && text[j] !== '\n') j++
      raw = value = text.slice(i, j)
      if (/["\r]/.test(raw)) return { records, error: `bare quote or CR in unquoted field ${JSON.stringify(raw.slice(0, 40))} of record ${records.length + 1}` }
      i = j
    }
    fields.push({ raw, value })
    if (i >= n) return { records, error: `last record is not LF-terminated` }
    if (text[i] === ',') { i++; continue }
    i++ // LF
    records.push(fields)
    fields = []
    if (i >= n) return { records }
  }
}

const NUMBER_TEXT = /^-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/

// Length of the shortest text std::to_chars can print for a finite value whose
// shortest round-trip digits JS gives: fixed or scientific, whichever is shorter
// (to_chars prints fixed integers with their exact digits, so count characters,
// not significant digits).
function shortestLength(type, v) {
  const [mant, exp] = Number(type === 'FLOAT' ? shortestFloat32(v) : v).toExponential().split('e')
  const digits = mant.replace(/[-.]/g, '').length
  const e = Number(exp)
  const sign = v < 0 ? 1 : 0
  const sci = digits + (digits > 1 ? 1 : 0) + 2 + Math.max(2, String(Math.abs(e)).length)
  const fixed = e >= digits - 1 ? e + 1 : e >= 0 ? digits + 1 : 1 + -e + digits
  return sign + Math.min(sci, fixed)
}

function parseNumberCell(text) {
  if (text === 'nan') return NaN
  if (text === 'inf') return Infinity
  if (text === '-inf') return -Infinity
  return NUMBER_TEXT.test(text) ? Number(text) : undefined
}

// Compare twotower's CSV (actual) with the expected CSV, column types known.
// Integers, booleans and strings must match byte for byte (so quoting must be
// exactly the promised one); FLOAT/DOUBLE cells are compared as numbers.
// Returns { errors, notes }: notes are non-shortest float texts, not failures.
export function compareCsv(expectedText, actualText, columns, { maxErrors = 8 } = {}) {
  const errors = []
  const notes = []
  const exp = parseCsv(expectedText)
  if (exp.error) return { errors: [`expected CSV unreadable (harness bug): ${exp.error}`], notes }
  const act = parseCsv(actualText)
  if (act.error) return { errors: [`output is not valid CSV: ${act.error}`], notes }
  const [expHeader, ...expRows] = exp.records
  const [actHeader, ...actRows] = act.records
  const headerText = r => r.map(f => f.raw).join(',')
  if (!actHeader || headerText(actHeader) !== headerText(expHeader)) {
    errors.push(`header: got ${JSON.stringify(actHeader ? headerText(actHeader) : '')}, expected ${JSON.stringify(headerText(expHeader))}`)
    return { errors, notes }
  }
  if (actRows.length !== expRows.length) errors.push(`${actRows.length} data rows, expected ${expRows.length}`)
  const fail = msg => { if (errors.length < maxErrors) errors.push(msg); else errors.overflow = (errors.overflow || 0) + 1 }
  for (let r = 0; r < Math.min(actRows.length, expRows.length); r++) {
    const a = actRows[r], e = expRows[r]
    if (a.length !== e.length) { fail(`row ${r + 1}: ${a.length} fields, expected ${e.length}`); continue }
    for (let c = 0; c < e.length; c++) {
      const { type, name } = columns[c]
      const at = a[c].raw, et = e[c].raw
      if (at === et) continue
      const where = `row ${r + 1} column ${name} (${type})`
      if (!FLOAT_TYPES.has(type)) { fail(`${where}: got ${JSON.stringify(at)}, expected ${JSON.stringify(et)}`); continue }
      if (at === '' || et === '') { fail(`${where}: got ${JSON.stringify(at)}, expected ${JSON.stringify(et)}`); continue }
      const av = parseNumberCell(at), ev = parseNumberCell(et)
      if (av === undefined) { fail(`${where}: ${JSON.stringify(at)} is not a number in the promised format`); continue }
      const same = type === 'FLOAT' ? Object.is(Math.fround(av), Math.fround(ev)) : Object.is(av, ev)
      if (!same) { fail(`${where}: got ${at}, expected ${et}`); continue }
      if (Number.isFinite(av) && av !== 0 && at.length > shortestLength(type, av) && notes.length < 3) {
        notes.push(`${where}: ${at} is right but not shortest (${shortestLength(type, av)} characters would do)`)
      }
    }
  }
  if (errors.overflow) errors.push(`... and ${errors.overflow} more mismatching cells`)
  return { errors, notes }
}

// ---------------------------------------------------------------------------
// Page census: walk every page header of every column chunk (hyparquet's
// thrift page-header reader), to see page versions and per-page encodings.

export function readArrayBuffer(path) {
  const buf = readFileSync(path)
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)
}

export function pageCensus(peers, ab) {
  const md = peers.hyparquet.parquetMetadata(ab)
  const view = new DataView(ab)
  const chunks = []
  for (const [rowGroup, rg] of md.row_groups.entries()) {
    for (const cc of rg.columns) {
      const m = cc.meta_data
      const start = Number(m.dictionary_page_offset ?? m.data_page_offset)
      const end = start + Number(m.total_compressed_size)
      const pages = []
      let valuesSeen = 0
      for (let off = start; off < end && valuesSeen < Number(m.num_values);) {
        const reader = { view, offset: off }
        const h = peers.parquetHeader(reader)
        const body = h.data_page_header ?? h.data_page_header_v2 ?? h.dictionary_page_header ?? {}
        pages.push({ type: h.type, encoding: body.encoding, num_values: body.num_values })
        if (h.type !== 'DICTIONARY_PAGE') valuesSeen += body.num_values ?? 0
        off = reader.offset + h.compressed_page_size
      }
      chunks.push({
        rowGroup,
        column: m.path_in_schema.join('.'),
        codec: m.codec,
        encodings: m.encodings,
        hasDictionaryOffset: m.dictionary_page_offset !== undefined,
        pages,
      })
    }
  }
  return { metadata: md, chunks }
}

// Per column: how many pages of each "TYPE:ENCODING" kind, over all row groups.
export function censusByColumn(census) {
  const out = {}
  for (const ch of census.chunks) {
    const col = (out[ch.column] ??= {})
    for (const p of ch.pages) {
      const k = `${p.type}:${p.encoding}`
      col[k] = (col[k] ?? 0) + 1
    }
  }
  return out
}

// ---------------------------------------------------------------------------
// Reporting: one line per check, counted by the driver script.

export class Report {
  constructor() { this.passed = 0; this.failed = 0 }
  pass(name, detail = '') { this.passed++; console.log(`PASS ${name}${detail ? ` (${detail})` : ''}`) }
  fail(name, why) {
    this.failed++
    const lines = Array.isArray(why) ? why : [String(why)]
    console.log(`FAIL ${name}: ${lines[0]}`)
    for (const l of lines.slice(1)) console.log(`     ${l}`)
  }
  note(msg) { console.log(`NOTE ${msg}`) }
  // errors: [] means pass
  check(name, errors, detail) { errors.length ? this.fail(name, errors) : this.pass(name, detail) }
  async guard(name, fn) {
    try { return await fn() } catch (e) { this.fail(name, `threw: ${e?.stack?.split('\n').slice(0, 3).join(' | ') ?? e}`) }
  }
  finish() {
    // The driver prints the one overall total; standalone runs print their own.
    if (!process.env.INTEROP_DRIVER) console.log(`${this.passed} passed, ${this.failed} failed`)
    process.exitCode = this.failed ? 1 : 0
  }
}

// Deterministic pseudo-random numbers (mulberry32), so files are identical run to run.
export function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// Strings that break naive CSV writers and readers, plus non-ASCII.
export const AWKWARD = [
  'plain', 'comma,inside', 'quote"inside', '"fully quoted"', 'new\nline', 'cr\rhere', 'crlf\r\nend',
  'tab\there', ' leading space', 'trailing space ', 'a,b,"c"\n"d"', 'ünïcödé', '日本語テキスト', 'emoji 🦆🦆',
  'Ωmega', '', 'x'.repeat(300), '\u00a0nbsp', 'back\\slash', '😀,"😀"\n😀',
]

// A zstd frame holding the bytes in raw (stored) blocks. Node 20 has no zstd
// compressor; this is valid zstd that every decoder must accept, while real
// zstd entropy coding is covered by DuckDB's ZSTD files.
export function zstdStored(bytes) {
  const head = new Uint8Array(13)
  head.set([0x28, 0xb5, 0x2f, 0xfd, 0xe0]) // magic; single segment, 8-byte content size
  new DataView(head.buffer).setBigUint64(5, BigInt(bytes.length), true)
  const parts = [head]
  let off = 0
  do {
    const n = Math.min(128 * 1024, bytes.length - off) // block size limit
    const h = (n << 3) | (off + n >= bytes.length ? 1 : 0) // block type 0 = raw; last-block bit
    parts.push(Uint8Array.of(h & 255, (h >> 8) & 255, h >> 16), bytes.subarray(off, off + n))
    off += n
  } while (off < bytes.length)
  return new Uint8Array(Buffer.concat(parts))
}
