// The DuckDB side of bench/run_parquet_bench.sh, and that script's report.
//
//   node bench/parquet_bench_duckdb.mjs baseline
//   node bench/parquet_bench_duckdb.mjs read FILE THREADS
//   node bench/parquet_bench_duckdb.mjs write IN.parquet OUT CODEC THREADS   (CODEC: snappy | zstd | none = CSV)
//   node bench/parquet_bench_duckdb.mjs report RESULTS.jsonl META.json       (markdown on stdout)
//
// Each measuring call does one operation and prints one JSON line in the shape bench_table_io
// prints (op, file, rows, bytes, seconds, rows_per_s, mb_per_s, peak_rss_mib) plus engine,
// threads and the DuckDB version. One operation per process, so that maxRSS is that
// operation's own peak (Node plus DuckDB; "baseline" is a process that only loads DuckDB and
// runs SELECT 1, for the reader to compare with; nothing is subtracted).
//
// How DuckDB is made as fast as it honestly can be:
//   - an in-memory database, the thread count set both at creation and with SET threads;
//   - only the query is timed (not Node's start, the module load or opening the database);
//   - the read is one aggregate over every column (count and sum of each), so every value of
//     every row group is decoded but almost nothing is materialised or sent back to JavaScript;
//   - CSV is read with the schema given (auto_detect=false, header, delimiter, quote), so the
//     sniffer is not timed;
//   - the write copies an in-memory table (loaded before the clock starts) with COPY ... TO,
//     DuckDB's own bulk writer; Parquet with ROW_GROUP_SIZE equal to twotower's (1,000,000
//     rows; DUCKDB_ROW_GROUP_SIZE overrides it) so both write files of the same shape.
// The packages are resolved from NPM_DIR (default build/interop-npm, the interop tests' install).
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, statSync, unlinkSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const NPM_DIR = resolve(process.env.NPM_DIR || join(ROOT, 'build/interop-npm'))

// The interactions table twotower's generator writes and `twotower convert` turns into
// Parquet: integers are INT64 there, p_true DOUBLE. CSV is read with the same types.
const COLUMNS = [
  ['user_id', 'BIGINT'],
  ['movie_id', 'BIGINT'],
  ['rating', 'BIGINT'],
  ['liked', 'BIGINT'],
  ['p_true', 'DOUBLE'],
]
const ROW_GROUP_SIZE = Number(process.env.DUCKDB_ROW_GROUP_SIZE || 1000000)

const sqlStr = s => `'${String(s).replaceAll("'", "''")}'`
const isParquet = f => f.endsWith('.parquet')
const peakRssMiB = () => process.resourceUsage().maxRSS / 1024 // maxRSS is in KiB

async function openDuck(threads) {
  const require = createRequire(join(NPM_DIR, 'noop.js'))
  const duckdb = await import(pathToFileURL(require.resolve('@duckdb/node-api')).href)
  const instance = await duckdb.DuckDBInstance.create(':memory:', { threads: String(threads) })
  const conn = await instance.connect()
  await conn.run(`SET threads = ${Number(threads)}`)
  const rows = async sql => (await conn.runAndReadAll(sql)).getRowsJS()
  const [[version]] = await rows('SELECT version()')
  return { conn, rows, version }
}

// A table function over FILE that reads every column with its type.
function scanOf(file) {
  if (isParquet(file)) return `read_parquet(${sqlStr(file)})`
  const cols = COLUMNS.map(([n, t]) => `${sqlStr(n)}: ${sqlStr(t)}`).join(', ')
  return `read_csv(${sqlStr(file)}, header = true, delim = ',', quote = '"', escape = '"', ` +
    `auto_detect = false, columns = {${cols}})`
}

function emit(duck, op, file, threads, rows, seconds, extra = {}) {
  const bytes = statSync(file).size
  console.log(JSON.stringify({
    engine: 'duckdb', threads, op, file, rows, bytes, seconds, ...extra,
    rows_per_s: rows / seconds, mb_per_s: bytes / 1e6 / seconds,
    peak_rss_mib: peakRssMiB(), version: duck.version,
  }))
}

async function read(file, threads) {
  const duck = await openDuck(threads)
  // sum() of every column: DuckDB cannot answer it from the footer's statistics (count(*)
  // alone it would), so every page of every column is decompressed and decoded.
  const sql = `SELECT count(*), ${COLUMNS.map(([n]) => `sum(${n})`).join(', ')} FROM ${scanOf(file)}`
  const t = performance.now()
  const [[count]] = await duck.rows(sql)
  const seconds = (performance.now() - t) / 1000
  emit(duck, 'read', file, threads, Number(count), seconds)
}

async function write(input, out, codec, threads) {
  const duck = await openDuck(threads)
  // Not timed: the table in memory, as bench_table_io holds it before its clock starts.
  await duck.conn.run(`CREATE TABLE t AS SELECT * FROM ${scanOf(input)}`)
  const [[rows]] = await duck.rows('SELECT count(*) FROM t')
  if (existsSync(out)) unlinkSync(out)
  const options = codec === 'none'
    ? 'FORMAT csv, HEADER true'
    : `FORMAT parquet, COMPRESSION ${codec}, ROW_GROUP_SIZE ${ROW_GROUP_SIZE}`
  const t = performance.now()
  await duck.conn.run(`COPY t TO ${sqlStr(out)} (${options})`)
  const seconds = (performance.now() - t) / 1000
  // DuckDB does not fsync what COPY writes (strace shows no fsync/fdatasync); twotower's writer
  // does (temporary file, fsync, rename). The fsync of DuckDB's file is timed apart, so the
  // report can show DuckDB's time both as it is (the headline) and made durable like twotower's.
  const t2 = performance.now()
  const fd = openSync(out, 'r+')
  fsyncSync(fd)
  closeSync(fd)
  const fsync_seconds = (performance.now() - t2) / 1000
  emit(duck, 'write', out, threads, Number(rows), seconds, { fsync_seconds })
}

async function baseline() {
  const duck = await openDuck(1)
  await duck.rows('SELECT 1')
  console.log(JSON.stringify({ engine: 'duckdb', op: 'baseline', peak_rss_mib: peakRssMiB(), version: duck.version }))
}

// ---- report -------------------------------------------------------------------------------------
// RESULTS.jsonl: every measured line, each tagged by the script with "engine" ("twotower" or
// "duckdb"), "threads", "kind" (csv | snappy | zstd) and "repeat". Medians per (op, kind, engine,
// threads), of the seconds and of the peak RSS alike.

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

function report(resultsPath, metaPath) {
  const lines = readFileSync(resultsPath, 'utf8').split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l))
  const meta = JSON.parse(readFileSync(metaPath, 'utf8'))
  const med = (op, kind, engine, threads) => {
    const runs = lines.filter(r => r.op === op && r.kind === kind && r.engine === engine && (threads === undefined || r.threads === threads))
    if (!runs.length) return null
    const seconds = median(runs.map(r => r.seconds))
    return {
      n: runs.length, seconds, rows: runs[0].rows, bytes: median(runs.map(r => r.bytes)),
      rows_per_s: runs[0].rows / seconds,
      mb_per_s: median(runs.map(r => r.bytes)) / 1e6 / seconds,
      peak_rss_mib: median(runs.map(r => r.peak_rss_mib)),
      durable_seconds: median(runs.map(r => r.seconds + (r.fsync_seconds ?? 0))),
    }
  }
  const int = x => (x == null ? '-' : Math.round(x).toLocaleString('en-US'))
  const f1 = x => (x == null ? '-' : x.toFixed(1))
  const ratio = (a, b) => (a && b ? `${(a / b).toFixed(2)}x` : '-')
  const mib = b => (b / 1048576).toFixed(1)
  const out = []
  const p = s => out.push(s)
  const baseline = lines.find(r => r.op === 'baseline')

  p(`# Table I/O: twotower against DuckDB (${int(meta.rows)} interactions)`)
  p('')
  p(`Machine: ${meta.nproc} cores, ${meta.cpu}, ${meta.mem_gib} GiB. DuckDB ${baseline?.version ?? '?'} ` +
    `(@duckdb/node-api ${meta.duckdb_node_api}), Node ${meta.node}. ${meta.repeats} repeat(s), medians. ` +
    `twotower: one thread (OMP_NUM_THREADS=1; its reader is single-threaded). ` +
    `MB/s = file bytes (the file read, or the file written) / seconds, 1 MB = 10^6 bytes.`)
  p('')
  p(`Peak RSS: each operation is its own process (getrusage / process.resourceUsage().maxRSS). ` +
    `DuckDB's includes Node: a Node process that only loads DuckDB and runs SELECT 1 peaks at ` +
    `${f1(baseline?.peak_rss_mib)} MiB (not subtracted).`)
  p('')
  p('Files (the generator\'s train split; Parquet by `twotower convert`, 1,000,000-row row groups):')
  p('')
  p('| file | bytes | MiB |')
  p('| --- | --- | --- |')
  for (const [kind, f] of Object.entries(meta.files)) p(`| ${kind}: ${f.path} | ${int(f.bytes)} | ${mib(f.bytes)} |`)
  p('')

  for (const op of ['read', 'write']) {
    p(`## ${op}`)
    p('')
    p(op === 'read'
      ? 'twotower: `bench_table_io read` (Parquet: every column of every row group decoded; CSV: every field split, not parsed to numbers). ' +
        'DuckDB: `SELECT count(*), sum(each column) FROM read_parquet(...)` / `read_csv(...)` with the schema given (CSV values parsed to BIGINT/DOUBLE).'
      : 'From a table in memory (loaded from the snappy file, not timed). twotower: `bench_table_io write` (it writes to a temporary file, fsyncs it and renames it into place). ' +
        `DuckDB: \`COPY t TO ... (FORMAT parquet, COMPRESSION ..., ROW_GROUP_SIZE ${meta.duckdb_row_group_size})\` / \`(FORMAT csv, HEADER true)\`.`)
    p('')
    const w = op === 'write'
    p('| file | twotower rows/s | twotower MB/s | DuckDB 1t rows/s | DuckDB 1t MB/s | twotower / DuckDB-1t | DuckDB 2t rows/s | twotower / DuckDB-2t | twotower s | DuckDB 1t s |' +
      (w ? ' DuckDB 1t s + fsync |' : '') + ' twotower peak RSS MiB | DuckDB 1t peak RSS MiB | DuckDB 2t peak RSS MiB |')
    p('|' + ' --- |'.repeat(w ? 14 : 13))
    for (const kind of ['csv', 'snappy', 'zstd']) {
      const tt = med(op, kind, 'twotower')
      const d1 = med(op, kind, 'duckdb', 1)
      const d2 = med(op, kind, 'duckdb', 2)
      if (!tt && !d1) continue
      p(`| ${kind} | ${int(tt?.rows_per_s)} | ${f1(tt?.mb_per_s)} | ${int(d1?.rows_per_s)} | ${f1(d1?.mb_per_s)} | ` +
        `${ratio(tt?.rows_per_s, d1?.rows_per_s)} | ${int(d2?.rows_per_s)} | ${ratio(tt?.rows_per_s, d2?.rows_per_s)} | ` +
        `${tt ? tt.seconds.toFixed(3) : '-'} | ${d1 ? d1.seconds.toFixed(3) : '-'} | ` +
        (w ? `${d1 ? d1.durable_seconds.toFixed(3) : '-'} | ` : '') +
        `${f1(tt?.peak_rss_mib)} | ${f1(d1?.peak_rss_mib)} | ${f1(d2?.peak_rss_mib)} |`)
    }
    if (op === 'write') {
      p('')
      p('Written file sizes (last repeat): ' + ['csv', 'snappy', 'zstd'].map(kind => {
        const last = e => lines.filter(r => r.op === 'write' && r.kind === kind && r.engine === e.engine && (e.threads === undefined || r.threads === e.threads)).at(-1)
        const a = last({ engine: 'twotower' }), b = last({ engine: 'duckdb', threads: 1 })
        return `${kind} twotower ${a ? mib(a.bytes) : '-'} MiB, DuckDB ${b ? mib(b.bytes) : '-'} MiB`
      }).join('; ') + '.')
    }
    p('')
  }

  p('## load (what training does with an interactions file)')
  p('')
  p('`bench_table_io load users.csv movies.csv INTERACTIONS`: ReadInteractions into entity rows (ids looked up in the users and movies tables), labels and p_true; only that is timed. Target: Parquet at least 5x faster than CSV.')
  p('')
  p('| interactions | rows | seconds | rows/s | MB/s | peak RSS MiB | CSV s / this s |')
  p('| --- | --- | --- | --- | --- | --- | --- |')
  const csv = med('load', 'csv', 'twotower')
  for (const kind of ['csv', 'snappy']) {
    const r = med('load', kind, 'twotower')
    if (!r) continue
    p(`| ${kind} | ${int(r.rows)} | ${r.seconds.toFixed(3)} | ${int(r.rows_per_s)} | ${f1(r.mb_per_s)} | ${f1(r.peak_rss_mib)} | ${ratio(csv?.seconds, r.seconds)} |`)
  }
  p('')
  p('## targets')
  p('')
  for (const kind of ['csv', 'snappy', 'zstd']) {
    const tt = med('read', kind, 'twotower'), d1 = med('read', kind, 'duckdb', 1)
    if (tt && d1) p(`- read ${kind} at least as fast as DuckDB on one thread: ${tt.rows_per_s >= d1.rows_per_s ? 'MET' : 'NOT MET'} (${ratio(tt.rows_per_s, d1.rows_per_s)})`)
  }
  const lp = med('load', 'snappy', 'twotower')
  if (csv && lp) p(`- load: Parquet at least 5x faster than CSV: ${csv.seconds / lp.seconds >= 5 ? 'MET' : 'NOT MET'} (${ratio(csv.seconds, lp.seconds)})`)
  p('')
  p(`Data generation: ${meta.generate_s} s (\`${meta.generate_cmd}\`); conversions: ${meta.convert_s} s${meta.reused ? '; the data was made by an earlier run of the script, these are its times' : ''}.`)
  console.log(out.join('\n'))
}

// ---- main ---------------------------------------------------------------------------------------
const [op, ...args] = process.argv.slice(2)
const usage = () => {
  console.error('usage: parquet_bench_duckdb.mjs baseline | read FILE THREADS | write IN.parquet OUT CODEC THREADS | report RESULTS.jsonl META.json')
  process.exit(2)
}
try {
  if (op === 'baseline' && args.length === 0) await baseline()
  else if (op === 'read' && args.length === 2) await read(args[0], Number(args[1]))
  else if (op === 'write' && args.length === 4) await write(args[0], args[1], args[2], Number(args[3]))
  else if (op === 'report' && args.length === 2) report(args[0], args[1])
  else usage()
} catch (e) {
  console.error(`error: ${e.message}`)
  process.exit(1)
}
