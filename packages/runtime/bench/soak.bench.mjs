// Soak benchmark (issue 15): does memory stay flat as turns accumulate, and return once
// sessions go idle? Runs the facade (createRuntime, local model at 0 ms) on the real file
// system in a temporary directory; needs `node --expose-gc` (the bench script passes it).
//
// 1. SOAK_TURNS (100,000) turns over SOAK_SESSIONS (1,000) sessions from 50 concurrent
//    clients, compactions included (a small context window), with SSE-like subscribers to
//    the runtime's events connecting and disconnecting; RSS and heap used after a full GC
//    are sampled every SOAK_EVERY (10,000) turns.
// 2. IDLE_SESSIONS (10,000) sessions touched once each, then left idle until their leases
//    are released; compared with a fresh runtime idle over the same directory.
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import { Runner } from "@converge/runner"
import { Transcript } from "@converge/transcript"
import { createRuntime } from "../dist/index.js"

const TURNS = Number(process.env.SOAK_TURNS ?? 100_000)
const SESSIONS = Number(process.env.SOAK_SESSIONS ?? 1_000)
const EVERY = Number(process.env.SOAK_EVERY ?? 10_000)
const IDLE_SESSIONS = Number(process.env.IDLE_SESSIONS ?? 10_000)
const CLIENTS = 50
const LEASE_MS = 2_000 // idle leases are released after 3 × leaseMs
const root = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), "converge-soak-"))
const log = (...args) => console.error(...args)

if (typeof globalThis.gc !== "function") {
  console.error("soak.bench.mjs needs node --expose-gc")
  process.exit(1)
}

const mb = (n) => (n / 1024 / 1024).toFixed(1)
const measure = async (rt) => {
  for (let i = 0; i < 3; i++) {
    globalThis.gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  const m = process.memoryUsage()
  // `?? none`: the same bench runs on builds from before the bounds (for the before figures).
  const none = Effect.succeed(undefined)
  const stats = rt
    ? await rt.runtime.runPromise(
        Effect.all({
          cache: Effect.flatMap(Transcript, (t) => t.cacheStats ?? none),
          keys: Effect.flatMap(Runner, (r) => r.idempotencyKeys ?? none)
        })
      )
    : undefined
  return { rss: m.rss, heap: m.heapUsed, stats }
}

const options = (dir) => ({
  sessionsDir: dir,
  model: "local",
  localReplyMs: 0,
  localSummaryMs: 0,
  leaseMs: LEASE_MS,
  ...(process.env.SOAK_CACHE_MB ? { cacheMb: Number(process.env.SOAK_CACHE_MB) } : {}),
  // Small windows: a session compacts every few dozen turns.
  contextWindow: 4_000,
  reserveTokens: 500,
  keepRecentTokens: 1_000
})

const message = (i) => `question ${i}: ${"lorem ipsum dolor sit amet ".repeat(20)}`

const row = (cells) => `| ${cells.join(" | ")} |`

// --- 1. many turns over many sessions -------------------------------------------------------
const soak = async () => {
  const dir = path.join(root, "soak")
  const rt = await createRuntime(options(dir))
  const subscribers = []
  let heard = 0
  let compactions = 0
  let next = 0
  let done = 0
  const samples = []
  const t0 = performance.now()
  const sampleAt = new Set(Array.from({ length: Math.floor(TURNS / EVERY) }, (_, i) => (i + 1) * EVERY))
  let sampling = Promise.resolve()
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      for (;;) {
        const i = next++
        if (i >= TURNS) return
        // One client in five sends an Idempotency-Key, as a retrying HTTP client would.
        const r = await rt.turn(
          `soak:${i % SESSIONS}`,
          message(i),
          i % 5 === 0 ? { idempotencyKey: `k${i}` } : {}
        )
        if (r.outcome !== "completed") throw new Error(`turn ${i}: ${r.outcome} ${r.error?.message ?? ""}`)
        if (r.compaction.state === "completed") compactions++
        done++
        // SSE-like clients: one connects every 500 turns (one session, or all), the oldest leaves past 20.
        if (done % 500 === 0) {
          const key = done % 1000 === 0 ? undefined : `soak:${done % SESSIONS}`
          subscribers.push(rt.subscribe(() => heard++, key === undefined ? {} : { sessionKey: key }))
          if (subscribers.length > 20) subscribers.shift()()
        }
        if (sampleAt.has(done)) {
          const at = done
          const seconds = (performance.now() - t0) / 1000
          sampling = sampling.then(async () => {
            const m = await measure(rt)
            samples.push({ at, seconds, ...m })
            log(`soak: ${at} turns, ${seconds.toFixed(0)} s, rss ${mb(m.rss)} MB, heap ${mb(m.heap)} MB`)
          })
          await sampling
        }
      }
    })
  )
  await sampling
  for (const stop of subscribers) stop()
  await rt.dispose()
  return { samples, compactions, heard }
}

// --- 2. many sessions touched once, then idle ----------------------------------------------
const idle = async () => {
  const dir = path.join(root, "idle")
  const rt = await createRuntime(options(dir))
  const before = await measure(rt)
  let next = 0
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      for (;;) {
        const i = next++
        if (i >= IDLE_SESSIONS) return
        const r = await rt.turn(`idle:${i}`, message(i))
        if (r.outcome !== "completed") throw new Error(`turn ${i}: ${r.outcome}`)
      }
    })
  )
  const touched = await measure(rt)
  // Idle: every lease (and the parsed transcript it keeps) is released after 3 × leaseMs.
  await new Promise((resolve) => setTimeout(resolve, 3 * LEASE_MS + 2_000))
  const idled = await measure(rt)
  await rt.dispose()
  // The idle baseline: a fresh runtime over the same 10,000 sessions, nothing touched.
  const fresh = await createRuntime(options(dir))
  await new Promise((resolve) => setTimeout(resolve, 1_000))
  const baseline = await measure(fresh)
  await fresh.dispose()
  return { before, touched, idled, baseline }
}

const main = async () => {
  const start = await measure(undefined)
  log(`soak: ${TURNS} turns over ${SESSIONS} sessions in ${root}`)
  const s = await soak()
  const first = s.samples[0]
  const last = s.samples[s.samples.length - 1]
  console.log(`\n## Soak: ${TURNS.toLocaleString("en")} turns over ${SESSIONS.toLocaleString("en")} sessions`)
  console.log(
    `(${s.compactions} compactions, ${s.heard} events delivered to subscribers; process at start: rss ${mb(start.rss)} MB, heap ${mb(start.heap)} MB)\n`
  )
  console.log(
    row([
      "turns",
      "elapsed s",
      "RSS MB",
      "heap used MB (after GC)",
      "cached transcripts",
      "cache MB (est.)",
      "idempotency keys"
    ])
  )
  console.log(row(["---:", "---:", "---:", "---:", "---:", "---:", "---:"]))
  for (const x of s.samples) {
    console.log(
      row([
        x.at.toLocaleString("en"),
        x.seconds.toFixed(0),
        mb(x.rss),
        mb(x.heap),
        x.stats.cache?.sessions ?? "—",
        x.stats.cache === undefined ? "—" : mb(x.stats.cache.bytes),
        x.stats.keys ?? "—"
      ])
    )
  }
  if (first !== undefined && last !== undefined) {
    const growth = ((last.heap / first.heap - 1) * 100).toFixed(1)
    const maxRss = Math.max(...s.samples.map((x) => x.rss))
    console.log(
      `\nheap used at ${last.at.toLocaleString("en")} vs ${first.at.toLocaleString("en")} turns: ${growth} %; max RSS ${mb(maxRss)} MB`
    )
  }

  log(`idle: ${IDLE_SESSIONS} sessions touched once`)
  const i = await idle()
  console.log(`\n## ${IDLE_SESSIONS.toLocaleString("en")} sessions touched once, then idle\n`)
  console.log(row(["phase", "RSS MB", "heap used MB (after GC)", "cached transcripts", "leases held"]))
  console.log(row(["---", "---:", "---:", "---:", "---:"]))
  const phase = (name, m) =>
    console.log(
      row([name, mb(m.rss), mb(m.heap), m.stats.cache?.sessions ?? "—", m.stats.cache?.leases ?? "—"])
    )
  phase("runtime started, empty directory", i.before)
  phase(`just after all ${IDLE_SESSIONS.toLocaleString("en")} were touched`, i.touched)
  phase(`idle (after ${(3 * LEASE_MS) / 1000} s)`, i.idled)
  phase("idle baseline: fresh runtime on the same directory", i.baseline)
  console.log(
    `\nidle heap vs the idle baseline: ${((i.idled.heap / i.baseline.heap - 1) * 100).toFixed(1)} %`
  )
  fs.rmSync(root, { recursive: true, force: true })
}

await main()
