// Checks the harness itself, without twotower:
//  1. the CSV comparer accepts right output in other layouts and rejects wrong output;
//  2. check_twotower_files.mjs run against fake_twotower.mjs passes everything
//     except the v1-page checks (the fake writes v2 pages), and with each fault
//     the fake can inject, fails the checks meant to catch it.
//
//   node selftest.mjs WORK_DIR
import { spawnSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { HERE, Report, compareCsv } from './lib.mjs'

const WORK = process.argv[2]
if (!WORK) { console.error('usage: node selftest.mjs WORK_DIR'); process.exit(2) }
mkdirSync(WORK, { recursive: true })
const report = new Report()

// ---------------------------------------------------------------------------
// 1. Comparer

const COLS = [
  { name: 'a', type: 'INT64' }, { name: 'f', type: 'FLOAT' }, { name: 'd', type: 'DOUBLE' },
  { name: 's', type: 'STRING' }, { name: 'b', type: 'BOOLEAN' },
]
const ROWS = [
  ['1', '0.1', '0.1', 'plain', 'true'],
  ['-5', '3.4028235e+38', '1e-7', '"x,y"', 'false'],
  ['', 'nan', '-0', '', ''],
  ['9223372036854775807', 'inf', '-inf', '"q""q"', 'true'],
  ['2', '1e-45', '5e-324', '"l\nl"', 'false'],
]
const csv = (rows, { header = 'a,f,d,s,b', eol = '\n', last = true } = {}) =>
  [header, ...rows.map(r => r.join(','))].join(eol) + (last ? eol : '')
const EXPECTED = csv(ROWS)
const edit = (r, c, v) => ROWS.map((row, i) => (i === r ? row.map((x, j) => (j === c ? v : x)) : row))

const accept = [
  ['identical', csv(ROWS)],
  ['FLOAT in 9 digits', csv(edit(0, 1, '0.100000001')), /not shortest/],
  ['DOUBLE exponent as to_chars prints it', csv(edit(1, 2, '1e-07'))],
  ['FLOAT max in fixed layout', csv(edit(1, 1, '340282350000000000000000000000000000000')), /not shortest/],
  ['DOUBLE subnormal in 17 digits', csv(edit(4, 2, '4.9406564584124654e-324')), /not shortest/],
  ['FLOAT subnormal in full', csv(edit(4, 1, '1.401298464324817e-45')), /not shortest/],
]
const reject = [
  ['FLOAT one ulp off', csv(edit(0, 1, '0.10000001'))],
  ['DOUBLE one ulp off', csv(edit(0, 2, '0.10000000000000002'))],
  ['DOUBLE 0 for -0', csv(edit(2, 2, '0'))],
  ['NULL integer as 0', csv(edit(2, 0, '0'))],
  ['inf for nan', csv(edit(2, 1, 'inf'))],
  ['NaN spelled NaN', csv(edit(2, 1, 'NaN'))],
  ['DOUBLE in hex', csv(edit(0, 2, '0x1.999999999999ap-4'))],
  ['DOUBLE with a plus sign', csv(edit(0, 2, '+0.1'))],
  ['INT64 with a leading space', csv(edit(0, 0, ' 1'))],
  ['INT64 with a leading zero', csv(edit(0, 0, '01'))],
  ['BOOLEAN capitalised', csv(edit(0, 4, 'True'))],
  ['string with a comma unquoted', csv(edit(1, 3, 'x,y'))],
  ['string with a newline unquoted', csv(edit(4, 3, 'l\nl'))],
  ['inner quote not doubled', csv(edit(3, 3, '"q"q"'))],
  ['needless quotes', csv(edit(0, 3, '"plain"'))],
  ['empty string quoted', csv(edit(2, 3, '""'))],
  ['CRLF line ends', csv(ROWS, { eol: '\r\n' })],
  ['no LF after the last row', csv(ROWS, { last: false })],
  ['a row missing', csv(ROWS.slice(0, 4))],
  ['an extra row', csv([...ROWS, ROWS[0]])],
  ['header differs', csv(ROWS, { header: 'a,f,d,S,b' })],
  ['a field missing', csv(ROWS.map((r, i) => (i === 1 ? r.slice(0, 4) : r)))],
  ['empty output', ''],
]
for (const [name, text, noteRe] of accept) {
  const { errors, notes } = compareCsv(EXPECTED, text, COLS)
  const bad = [...errors]
  if (noteRe && !notes.some(n => noteRe.test(n))) bad.push(`no note matching ${noteRe}: ${JSON.stringify(notes)}`)
  if (!noteRe && notes.length) bad.push(`unexpected notes ${JSON.stringify(notes)}`)
  report.check(`comparer accepts: ${name}`, bad)
}
for (const [name, text] of reject) {
  const { errors } = compareCsv(EXPECTED, text, COLS)
  report.check(`comparer rejects: ${name}`, errors.length ? [] : ['accepted'], errors[0])
}

// ---------------------------------------------------------------------------
// 2. The whole check against the fake, without and with faults

function run(script, args, env = {}) {
  const r = spawnSync(process.execPath, [join(HERE, script), ...args], {
    encoding: 'utf8', env: { ...process.env, INTEROP_DRIVER: '1', ...env }, maxBuffer: 64 << 20, timeout: 600_000,
  })
  const lines = (r.stdout ?? '').split('\n')
  return { status: r.status, stderr: r.stderr, fails: lines.filter(l => l.startsWith('FAIL ')), passes: lines.filter(l => l.startsWith('PASS ')) }
}

const peerDir = join(WORK, 'peer')
const fake = join(HERE, 'fake_twotower.mjs')
{
  // Small peer set (no 120 MB file): the fake is slow JavaScript.
  const r = run('write_peer_files.mjs', [peerDir], { INTEROP_LARGE: '0' })
  report.check('write_peer_files.mjs (small set) for the fake runs', r.fails.length || r.status ? [r.fails[0] ?? `exit ${r.status}: ${r.stderr.slice(-300)}`] : [], `${r.passes.length} checks`)
}
{
  const r = run('check_twotower_files.mjs', [fake, peerDir, join(WORK, 'fake')])
  const unexpected = r.fails.filter(l => !/: v1 data pages, /.test(l))
  const v1 = r.fails.length - unexpected.length
  const errors = [...unexpected]
  if (v1 !== 5) errors.push(`${v1} v1-page failures, expected 5 (4 codecs and the fallback file: the fake writes v2 pages)`)
  if (r.passes.length < 40) errors.push(`only ${r.passes.length} checks passed`)
  report.check('fake twotower passes every check but v1 pages', errors, `${r.passes.length} passed`)
}

const FAULTS = [
  ['float-ulp', 'peers', /^FAIL peer (duckdb|hyparquet)_v\d_\w+\.parquet .*-> CSV equals expected/],
  ['double-digits', 'peers', /^FAIL peer (duckdb|hyparquet)_v\d_\w+\.parquet .*-> CSV equals expected/],
  ['no-quote', 'peers', /^FAIL peer (duckdb|hyparquet)_v\d_\w+\.parquet .*-> CSV equals expected/],
  ['null-zero', 'peers', /^FAIL peer (duckdb|hyparquet)_v\d_\w+\.parquet .*-> CSV equals expected/],
  ['accept-all', 'peers', /^FAIL peer unsupported_\w+\.parquet refused/],
  ['codec', 'csv', /^FAIL out_(zstd|gzip|none)\.parquet: codec /],
  ['row-groups', 'csv', /^FAIL out_\w+\.parquet: 8 row groups of 700 rows/],
  ['no-stats', 'csv', /^FAIL out_\w+\.parquet: statistics/],
  ['infer-prefix', 'csv', /^FAIL (out_\w+\.parquet: types and nullability|convert src\.csv)/],
  ['required-all', 'csv', /^FAIL out_\w+\.parquet: types and nullability/],
]
for (const [fault, only, expect] of FAULTS) {
  const r = run('check_twotower_files.mjs', [fake, peerDir, join(WORK, `fault-${fault}`)], { INTEROP_ONLY: only, FAKE_TWOTOWER_FAULT: fault })
  const hit = r.fails.filter(l => expect.test(l))
  report.check(`fault ${fault} is caught`, hit.length ? [] : [`no FAIL line matching ${expect}; got ${r.fails.length} failures: ${r.fails.slice(0, 2).join(' / ')}`],
    `${hit.length} failing checks, e.g. ${hit[0]?.slice(5, 140)}`)
}

report.finish()
