// Benchmarks of @converge/transcript against plain Node file I/O, on the real file system in a
// temporary directory. Run from the package: `npm run bench` (after `npx tsup`).
//
// Sizes (environment): BENCH_SESSIONS (default 1000) × BENCH_SESSION_KB (default 1024) for the
// start-up figure, the first BENCH_FOLD_SESSIONS (default 200) of them for the fold figure;
// BENCH_BATCHES (default 1500) turns for the append figure.
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer, ManagedRuntime } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { Transcript } from "../dist/index.js"

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 1000)
const SESSION_KB = Number(process.env.BENCH_SESSION_KB ?? 1024)
const BATCHES = Number(process.env.BENCH_BATCHES ?? 1500)
const FOLD_SESSIONS = Math.min(SESSIONS, Number(process.env.BENCH_FOLD_SESSIONS ?? 200))
const CONCURRENCY = 16

const root = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), "converge-bench-"))
const log = (...args) => console.error(...args)

const runtimeFor = (sessionsDir, options = {}) =>
  ManagedRuntime.make(
    Transcript.layer({ sessionsDir, leaseMs: 10_000, ...options }).pipe(Layer.provide(NodeContext.layer))
  )
const run = (rt, f) => rt.runPromise(Effect.flatMap(Transcript, f))

/** Runs `f` over `items` with at most `n` in flight. */
const pool = async (items, n, f) => {
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await f(items[next++])
    })
  )
}

const lorem = (n, seed) => {
  const words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do"]
  let s = ""
  for (let i = 0; s.length < n; i++) s += `${words[(i * 7 + seed) % words.length]} `
  return s.slice(0, n)
}

// ---- a turn: the user's message and the reply, as the runner appends them -----------------

const userEntry = (i) => ({
  type: "message",
  message: { role: "user", content: lorem(300, i), timestamp: i }
})
const replyEntry = (i, promptSeq) => ({
  type: "message",
  promptSeq,
  message: {
    role: "assistant",
    content: [{ type: "text", text: lorem(1500, i + 3) }],
    usage: { input: 1000 + i, output: 375, totalTokens: 1375 + i },
    stopReason: "stop",
    timestamp: i
  }
})

let idCounter = 0
const id = () => (idCounter++).toString(16).padStart(16, "0")

/** The same batch as JSON lines, as a plain appender would write it. */
const plainBatch = (i, parent) => {
  const at = new Date().toISOString()
  const u = { type: "message", id: id(), parentId: parent, timestamp: at, ...userEntry(i) }
  const r = { type: "message", id: id(), parentId: u.id, timestamp: at, ...replyEntry(i, 2 * i) }
  return { text: `${JSON.stringify(u)}\n${JSON.stringify(r)}\n`, last: r.id }
}

const benchAppends = async () => {
  const dir = path.join(root, "appends")
  fs.mkdirSync(dir)
  const rt = runtimeFor(dir)
  const plainFile = path.join(dir, "plain.jsonl")
  const fh = await fsp.open(plainFile, "a")
  await fh.appendFile(
    `${JSON.stringify({ type: "session", version: 3, id: "plain", timestamp: new Date().toISOString() })}\n`
  )
  let parent = null
  let ours = 0
  let plain = 0
  // Alternating blocks, so both sides see the same disk (fsync latency drifts). Converge is
  // called from Effect code, as the runner calls it.
  const BLOCK = 25
  for (let k = 0; k < BATCHES; k += BLOCK) {
    let t = performance.now()
    await run(rt, (tr) =>
      Effect.forEach(
        Array.from({ length: BLOCK }, (_, i) => k + i),
        (i) => tr.append("bench-append", [userEntry(i), replyEntry(i, 2 * i)]),
        { discard: true }
      )
    )
    ours += performance.now() - t
    t = performance.now()
    for (let i = k; i < k + BLOCK; i++) {
      const b = plainBatch(i, parent)
      parent = b.last
      await fh.appendFile(b.text)
      await fh.sync()
    }
    plain += performance.now() - t
  }
  const n = Math.ceil(BATCHES / BLOCK) * BLOCK
  await fh.close()
  await rt.dispose()
  const oursSize = fs.statSync(path.join(dir, "bench-append.jsonl")).size
  const plainSize = fs.statSync(plainFile).size
  log(
    `appends: ${n} batches each; ${(oursSize / 1e6).toFixed(1)} MB vs ${(plainSize / 1e6).toFixed(1)} MB written`
  )
  return { ours: n / (ours / 1000), plain: n / (plain / 1000), batches: n }
}

// ---- a corpus of long transcripts -----------------------------------------------------------

const sessionId = (i) => `bench-${String(i).padStart(6, "0")}`

const makeBody = (bytes) => {
  const lines = []
  let size = 0
  let parent = null
  let seq = 0
  for (let i = 0; size < bytes; i++) {
    const at = new Date(1_790_000_000_000 + i * 60_000).toISOString()
    const u = { type: "message", id: id(), parentId: parent, timestamp: at, ...userEntry(i) }
    const r = { type: "message", id: id(), parentId: u.id, timestamp: at, ...replyEntry(i, seq) }
    const batch = [u, r]
    seq += 2
    if (i % 100 === 99) {
      batch.push({
        type: "compaction",
        id: id(),
        parentId: r.id,
        timestamp: at,
        summary: lorem(2000, i),
        firstKeptEntryId: u.id,
        tokensBefore: 150_000,
        compactionId: `cmp_${i}`,
        tokensAfter: 21_000
      })
      seq++
    }
    if (i % 50 === 0) {
      batch.push({
        type: "custom",
        id: id(),
        parentId: batch.at(-1).id,
        timestamp: at,
        customType: "x",
        data: { i }
      })
      seq++
    }
    for (const e of batch) {
      const line = `${JSON.stringify(e)}\n`
      lines.push(line)
      size += Buffer.byteLength(line)
    }
    parent = batch.at(-1).id
  }
  return lines.join("")
}

const makeCorpus = (dir) => {
  fs.mkdirSync(dir)
  const body = makeBody(SESSION_KB * 1024)
  const t = performance.now()
  for (let i = 0; i < SESSIONS; i++) {
    const header = JSON.stringify({
      type: "session",
      version: 3,
      id: sessionId(i),
      timestamp: "2026-10-01T09:00:00.000Z",
      cwd: "/bench",
      sessionKey: `bench:${i}`
    })
    fs.writeFileSync(path.join(dir, `${sessionId(i)}.jsonl`), `${header}\n${body}`)
  }
  const bytes = SESSIONS * (Buffer.byteLength(body) + 150)
  log(
    `corpus: ${SESSIONS} × ${(Buffer.byteLength(body) / 1e6).toFixed(2)} MB written in ${((performance.now() - t) / 1000).toFixed(1)} s`
  )
  return { bytes, bodyBytes: Buffer.byteLength(body) }
}

const ids = () => Array.from({ length: SESSIONS }, (_, i) => sessionId(i))

/** Plain start-up: read every file whole and JSON.parse every line. */
const plainFoldAll = async (dir, which) => {
  let lines = 0
  await pool(which, CONCURRENCY, async (sid) => {
    const text = await fsp.readFile(path.join(dir, `${sid}.jsonl`), "utf8")
    for (const line of text.split("\n")) {
      if (line.length > 0) {
        JSON.parse(line)
        lines++
      }
    }
  })
  return lines
}

/** Plainer still: read every file whole, parse nothing. */
const plainReadAll = async (dir) => {
  let bytes = 0
  await pool(ids(), CONCURRENCY, async (sid) => {
    bytes += (await fsp.readFile(path.join(dir, `${sid}.jsonl`))).length
  })
  return bytes
}

/** Converge start-up: a new runtime lists the directory and folds every session. */
const convergeFoldAll = async (dir, options) => {
  const rt = runtimeFor(dir, options)
  const folds = await run(rt, (t) =>
    Effect.flatMap(t.list, (list) => Effect.forEach(list, (sid) => t.fold(sid), { concurrency: CONCURRENCY }))
  )
  await rt.dispose()
  return folds
}

const time = async (f) => {
  const t = performance.now()
  const result = await f()
  return { ms: performance.now() - t, result }
}

const benchCorpus = async () => {
  const dir = path.join(root, "sessions")
  const { bytes } = makeCorpus(dir)
  // Warm the page cache once so every pass reads from memory.
  await plainReadAll(dir)

  // Fold throughput: whole-file folds (no resume state) against read + JSON.parse, alternated,
  // over the first FOLD_SESSIONS files.
  const foldDir = path.join(root, "fold")
  fs.mkdirSync(foldDir)
  const foldIds = ids().slice(0, FOLD_SESSIONS)
  for (const sid of foldIds) fs.linkSync(path.join(dir, `${sid}.jsonl`), path.join(foldDir, `${sid}.jsonl`))
  const foldBytes = foldIds.reduce((n, sid) => n + fs.statSync(path.join(foldDir, `${sid}.jsonl`)).size, 0)
  const foldRounds = 2
  let oursFold = 0
  let plainFold = 0
  for (let round = 0; round < foldRounds; round++) {
    plainFold += (await time(() => plainFoldAll(foldDir, foldIds))).ms
    const b = await time(() => convergeFoldAll(foldDir, { resumeMinBytes: Number.POSITIVE_INFINITY }))
    oursFold += b.ms
    const first = b.result.find((f) => f.header.sessionId === sessionId(0))
    if (round === 0) {
      log(
        `fold of ${sessionId(0)}: lastSeq ${first.lastSeq}, ${first.compactionIndex} compactions, problems ${first.problems.length}`
      )
    }
  }

  // Start-up: the first runtime folds every file whole and leaves the resume index; a new
  // runtime then resumes every session from it (a read of each file's tail).
  const cold = await time(() => convergeFoldAll(dir, {}))
  const index = JSON.parse(fs.readFileSync(path.join(dir, "transcripts.resume.json"), "utf8"))
  const indexed = Object.keys(index.sessions).length
  if (indexed !== SESSIONS)
    throw new Error(`expected ${SESSIONS} sessions in the resume index, found ${indexed}`)
  const plainParse = (await time(() => plainFoldAll(dir, ids()))).ms
  let warm = Number.POSITIVE_INFINITY
  let plainRead = Number.POSITIVE_INFINITY
  for (let round = 0; round < 3; round++) {
    warm = Math.min(warm, (await time(() => convergeFoldAll(dir, {}))).ms)
    plainRead = Math.min(plainRead, (await time(() => plainReadAll(dir))).ms)
  }
  const resumed = await convergeFoldAll(dir, {})
  const whole = cold.result
  const same = JSON.stringify(resumed) === JSON.stringify(whole)
  if (!same) throw new Error("resumed folds differ from whole folds")
  return {
    bytes,
    foldSessions: foldIds.length,
    foldMBs: {
      ours: (foldBytes * foldRounds) / 1e6 / (oursFold / 1000),
      plain: (foldBytes * foldRounds) / 1e6 / (plainFold / 1000)
    },
    startup: { warm, cold: cold.ms, plainParse, plainRead }
  }
}

const fmt = (x, digits = 0) =>
  x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })

try {
  log(`bench in ${root} (${os.cpus().length} CPUs, node ${process.version})`)
  const appends = await benchAppends()
  const corpus = await benchCorpus()
  const size =
    SESSION_KB >= 1024 ? `${fmt(SESSION_KB / 1024, SESSION_KB % 1024 === 0 ? 0 : 1)} MB` : `${SESSION_KB} KB`
  const s = corpus.startup
  const rows = [
    ["measure", "Converge", "plain Node", "ratio", "target"],
    ["---", "---:", "---:", "---:", "---"],
    [
      `appends, batches of 2 (user + reply), fsync per batch, ${fmt(appends.batches)} batches`,
      `${fmt(appends.ours)} batches/s`,
      `${fmt(appends.plain)} batches/s (\`FileHandle.appendFile\` + \`sync\`, fd kept open)`,
      `${fmt((100 * appends.ours) / appends.plain)} %`,
      "≥ 50 %"
    ],
    [
      `fold throughput, ${fmt(corpus.foldSessions)} × ${size} transcripts, whole files`,
      `${fmt(corpus.foldMBs.ours)} MB/s`,
      `${fmt(corpus.foldMBs.plain)} MB/s (read + \`JSON.parse\` every line)`,
      `${fmt((100 * corpus.foldMBs.ours) / corpus.foldMBs.plain)} %`,
      "≥ 50 %"
    ],
    [
      `start-up over ${fmt(SESSIONS)} consistent sessions × ${size} (resumed from the index)`,
      `${fmt(s.warm / 1000, 2)} s`,
      `${fmt(s.plainParse / 1000, 2)} s (read every file whole + \`JSON.parse\`)`,
      `${fmt(s.plainParse / s.warm, 1)}× faster`,
      "≥ 10× faster"
    ],
    [
      "start-up, same sessions, against bare reads",
      `${fmt(s.warm / 1000, 2)} s`,
      `${fmt(s.plainRead / 1000, 2)} s (read every file whole, no parse)`,
      `${fmt(s.plainRead / s.warm, 1)}× faster`,
      "—"
    ],
    [
      "first start-up, no resume state (folds whole, writes the index)",
      `${fmt(s.cold / 1000, 2)} s`,
      `${fmt(s.plainParse / 1000, 2)} s`,
      `${fmt(s.plainParse / s.cold, 2)}×`,
      "—"
    ]
  ]
  console.log(rows.map((r) => `| ${r.join(" | ")} |`).join("\n"))
} finally {
  fs.rmSync(root, { recursive: true, force: true })
}
