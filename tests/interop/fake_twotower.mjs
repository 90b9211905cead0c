#!/usr/bin/env node
// A stand-in for `twotower convert`, built on hyparquet and hyparquet-writer,
// used only by selftest.mjs to check the harness itself: that it accepts right
// output and rejects wrong output. FAKE_TWOTOWER_FAULT=<name> makes it wrong in
// one way (see FAULTS). Known difference from the real thing: hyparquet-writer
// only writes data page v2, so the "v1 data pages" checks fail on its files.
import { readFileSync, writeFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { formatCell, loadPeers, pageCensus, parseCsv, readArrayBuffer, shortestFloat32, zstdStored } from './lib.mjs'

const FAULTS = {
  'float-ulp': 'Parquet->CSV: one FLOAT value per file printed one float32 ulp off',
  'double-digits': 'Parquet->CSV: DOUBLE printed with 15 significant digits',
  'no-quote': 'Parquet->CSV: strings never CSV-quoted',
  'null-zero': 'Parquet->CSV: NULL integers printed as 0',
  'accept-all': 'Parquet->CSV: unsupported encodings and codecs decoded instead of refused',
  'codec': 'CSV->Parquet: --compression ignored (always SNAPPY)',
  'row-groups': 'CSV->Parquet: --row-group-rows ignored (one row group)',
  'no-stats': 'CSV->Parquet: no statistics',
  'infer-prefix': 'CSV->Parquet: column types inferred from the first 100 rows only',
  'required-all': 'CSV->Parquet: every column REQUIRED, NULLs stored as empty strings/zeros',
}
const FAULT = process.env.FAKE_TWOTOWER_FAULT ?? ''

const die = msg => { process.stderr.write(`error: ${msg}\n`); process.exit(1) }
const args = process.argv.slice(2)
if (args[0] !== 'convert') die(`unknown command "${args[0]}"`)
if (args.includes('--help')) { console.log('usage: twotower convert IN OUT [--compression snappy|zstd|gzip|none] [--row-group-rows N]'); process.exit(0) }
const [input, output] = args.slice(1, 3)
const opt = (name, dflt) => { const k = args.indexOf(name); return k < 0 ? dflt : args[k + 1] }
const compression = opt('--compression', 'snappy')
const rowGroupRows = Number(opt('--row-group-rows', '1000000'))

const peers = await loadPeers()

if (input.endsWith('.parquet') && output.endsWith('.csv')) parquetToCsv()
else if (input.endsWith('.csv') && output.endsWith('.parquet')) csvToParquet()
else die('convert: need .csv -> .parquet or .parquet -> .csv')

async function parquetToCsv() {
  const ab = readArrayBuffer(input)
  const census = pageCensus(peers, ab)
  if (FAULT !== 'accept-all') {
    for (const ch of census.chunks) {
      if (!['UNCOMPRESSED', 'SNAPPY', 'GZIP', 'ZSTD'].includes(ch.codec)) die(`${input}: column '${ch.column}': unsupported compression codec ${ch.codec}`)
      for (const p of ch.pages) {
        if (!['PLAIN', 'PLAIN_DICTIONARY', 'RLE_DICTIONARY', 'RLE'].includes(p.encoding)) die(`${input}: column '${ch.column}': unsupported encoding ${p.encoding}`)
      }
    }
  }
  const schema = census.metadata.schema.slice(1)
  const columns = schema.map(e => ({ name: e.name, type: e.type === 'BYTE_ARRAY' ? 'STRING' : e.type }))
  let rows
  await peers.hyparquet.parquetRead({ file: ab, compressors: peers.compressors, onComplete: d => { rows = d } })
  let nudged = false
  const cell = (type, v) => {
    if (FAULT === 'float-ulp' && type === 'FLOAT' && !nudged && Number.isFinite(v) && v > 1) {
      nudged = true
      return shortestFloat32(v * (1 + 2 ** -23))
    }
    if (FAULT === 'double-digits' && type === 'DOUBLE' && Number.isFinite(v) && v !== 0) return String(Number(v.toPrecision(15)))
    if (FAULT === 'no-quote' && type === 'STRING' && v !== null) return v
    if (FAULT === 'null-zero' && (type === 'INT32' || type === 'INT64') && v === null) return '0'
    return formatCell(type, v)
  }
  const lines = [columns.map(c => c.name).join(',')]
  for (const row of rows) lines.push(columns.map((c, j) => cell(c.type, row[j])).join(','))
  writeFileSync(output, lines.join('\n') + '\n')
}

function csvToParquet() {
  const { records, error } = parseCsv(readFileSync(input, 'utf8'))
  if (error) die(`${input}: ${error}`)
  const [header, ...body] = records
  const columnData = header.map((h, j) => {
    const cells = body.map(r => r[j].value)
    const seen = FAULT === 'infer-prefix' ? cells.slice(0, 100) : cells
    const filled = seen.filter(s => s !== '')
    const isInt = s => /^-?\d+$/.test(s) && BigInt(s) >= -(2n ** 63n) && BigInt(s) < 2n ** 63n
    const isNum = s => /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s) && Number.isFinite(Number(s))
    const type = filled.every(isInt) ? 'INT64' : filled.every(isNum) ? 'DOUBLE' : 'STRING'
    const nullable = FAULT !== 'required-all' && cells.some(s => s === '')
    const conv = s => (type === 'INT64' ? BigInt(s) : type === 'DOUBLE' ? Number(s) : s)
    const data = cells.map(s => (s === '' ? (nullable ? null : conv(type === 'STRING' ? '' : '0')) : conv(s)))
    return { name: h.value, type, nullable, data }
  })
  const codec = FAULT === 'codec' ? 'SNAPPY' : { snappy: 'SNAPPY', zstd: 'ZSTD', gzip: 'GZIP', none: 'UNCOMPRESSED' }[compression]
  if (!codec) die(`unknown --compression ${compression}`)
  peers.writer.parquetWriteFile({
    filename: output,
    columnData,
    codec,
    compressors: { GZIP: b => gzipSync(b), ZSTD: zstdStored },
    rowGroupSize: FAULT === 'row-groups' ? 1e9 : rowGroupRows,
    statistics: FAULT !== 'no-stats',
    statisticsTruncateLength: Infinity,
    createdBy: 'twotower fake (tests/interop/fake_twotower.mjs)',
  })
}
