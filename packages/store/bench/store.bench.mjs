// Durable merges per second of SessionStore (write-behind, merge-on-flush) against what
// OpenClaw does per update (lock, read + parse the whole file, change one entry, write the
// whole file atomically with fsync, unlock), on the real file system, for 1 000 and 10 000
// sessions. Runs against the built package: `npm run bench` (turbo builds first).
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { performance } from "node:perf_hooks"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { Effect, Layer } from "effect"
import { SessionStore } from "../dist/index.js"

const FLUSH_INTERVAL_MS = 50
const STORE_SECONDS = Number(process.env.BENCH_STORE_SECONDS ?? 5)
const BASELINE_SECONDS = Number(process.env.BENCH_BASELINE_SECONDS ?? 4)
const SIZES = (process.env.BENCH_SIZES ?? "1000,10000").split(",").map(Number)
const PACED_RATE = Number(process.env.BENCH_PACED_RATE ?? 2000)

/** An entry shaped like OpenClaw's (about 700 bytes of JSON). */
const openclawEntry = (i) => ({
  sessionId: `${i.toString(16).padStart(8, "0")}-0b1d-4c3e-9a51-2f7d8e9c0a11`,
  updatedAt: 1_790_845_585_000 + i,
  compactionCount: 0,
  inputTokens: 7200,
  outputTokens: 300,
  totalTokens: 7500,
  totalTokensFresh: true,
  contextTokens: 200_000,
  model: "claude-sonnet-4-5",
  modelProvider: "anthropic",
  chatType: "direct",
  thinkingLevel: "low",
  lastChannel: "telegram",
  deliveryContext: { channel: "telegram", to: `user:${i}`, accountId: "default" },
  origin: { provider: "telegram", surface: "dm", from: `user:${i}` },
  skillsSnapshot: { prompt: "…", skills: [{ name: "weather" }, { name: "calendar" }] },
  systemPromptReport: {
    source: "run",
    generatedAt: 1_790_845_585_000,
    systemPrompt: { chars: 12_873, projectContextChars: 2100 }
  }
})

const keyOf = (i) => `agent:main:telegram:dm:${i}`

const seed = (dir, n) => {
  const file = {}
  for (let i = 0; i < n; i++) file[keyOf(i)] = openclawEntry(i)
  nodeFs.writeFileSync(nodePath.join(dir, "sessions.json"), JSON.stringify(file, null, 2), { mode: 0o600 })
  return nodeFs.statSync(nodePath.join(dir, "sessions.json")).size
}

const nextTick = Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

/**
 * SessionStore: each merge raises compactionCount of a session drawn uniformly from all n;
 * `rate` merges per second (Infinity: as fast as one fiber issues them, yielding to the event loop every 64).
 */
const runStore = (dir, n, rate) =>
  Effect.gen(function* () {
    const store = yield* SessionStore
    const counts = new Int32Array(n)
    const capacity = 1_000_000
    const issuedAt = new Float64Array(capacity)
    const latency = new Float64Array(capacity)
    let issued = 0
    let observed = 0
    const observe = Effect.map(store.stats, (s) => {
      const now = performance.now()
      for (; observed < s.durableMerges; observed++) latency[observed] = now - issuedAt[observed]
      return s
    })
    const start = performance.now()
    while (performance.now() - start < STORE_SECONDS * 1000 && issued < capacity) {
      const due =
        rate === Number.POSITIVE_INFINITY
          ? 64
          : Math.floor(((performance.now() - start) / 1000) * rate) - issued
      for (let b = 0; b < due; b++) {
        const i = Math.floor(Math.random() * n)
        const entry = openclawEntry(i)
        counts[i]++
        issuedAt[issued++] = performance.now()
        yield* store.merge(keyOf(i), {
          sessionId: entry.sessionId,
          generation: 0,
          sessionStartedAt: 0,
          compactionCount: counts[i]
        })
      }
      yield* observe
      // Let the event loop run (timers, file I/O), as a producer waiting on real work would.
      yield* rate === Number.POSITIVE_INFINITY ? nextTick : Effect.sleep(1)
    }
    let stats = yield* observe
    while (stats.durableMerges < issued) {
      yield* Effect.sleep(1)
      stats = yield* observe
    }
    const elapsed = (performance.now() - start) / 1000
    const sorted = latency.subarray(0, observed).sort()
    return {
      durablePerSecond: observed / elapsed,
      writesPerSecond: stats.writes / elapsed,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      merges: observed,
      writes: stats.writes
    }
  }).pipe(
    Effect.provide(SessionStore.layerFile({ sessionsDir: dir, flushIntervalMs: FLUSH_INTERVAL_MS })),
    Effect.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer))
  )

/** What OpenClaw does for every update of one entry. */
const runBaseline = (dir, n) => {
  const file = nodePath.join(dir, "sessions.json")
  const lock = `${file}.lock`
  const latencies = []
  const start = performance.now()
  let updates = 0
  while (performance.now() - start < BASELINE_SECONDS * 1000) {
    const t0 = performance.now()
    const lockFd = nodeFs.openSync(lock, "wx", 0o600)
    nodeFs.writeSync(lockFd, JSON.stringify({ pid: process.pid, createdAt: Date.now() }))
    nodeFs.closeSync(lockFd)
    const store = JSON.parse(nodeFs.readFileSync(file, "utf8"))
    const entry = store[keyOf(Math.floor(Math.random() * n))]
    entry.compactionCount += 1
    entry.updatedAt = Date.now()
    const tmp = `${file}.${process.pid}.${updates}.tmp`
    const fd = nodeFs.openSync(tmp, "w", 0o600)
    nodeFs.writeSync(fd, JSON.stringify(store, null, 2))
    nodeFs.fsyncSync(fd)
    nodeFs.closeSync(fd)
    nodeFs.renameSync(tmp, file)
    const dirFd = nodeFs.openSync(dir, "r")
    nodeFs.fsyncSync(dirFd)
    nodeFs.closeSync(dirFd)
    nodeFs.unlinkSync(lock)
    latencies.push(performance.now() - t0)
    updates++
  }
  const elapsed = (performance.now() - start) / 1000
  const sorted = Float64Array.from(latencies).sort()
  return {
    durablePerSecond: updates / elapsed,
    writesPerSecond: updates / elapsed,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    merges: updates,
    writes: updates
  }
}

const fmt = (x, digits = 0) =>
  x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })

const rows = []
for (const n of SIZES) {
  const root = nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "converge-bench-"))
  try {
    const dirFor = (name) => {
      const dir = nodePath.join(root, name)
      nodeFs.mkdirSync(dir)
      return dir
    }
    const baselineDir = dirFor("baseline")
    const bytes = seed(baselineDir, n)
    const baseline = runBaseline(baselineDir, n)
    const saturatedDir = dirFor("saturated")
    seed(saturatedDir, n)
    const saturated = await Effect.runPromise(runStore(saturatedDir, n, Number.POSITIVE_INFINITY))
    const pacedDir = dirFor("paced")
    seed(pacedDir, n)
    const paced = await Effect.runPromise(runStore(pacedDir, n, PACED_RATE))
    rows.push({ n, bytes, baseline, saturated, paced })
    process.stderr.write(`${n} sessions done\n`)
  } finally {
    nodeFs.rmSync(root, { recursive: true, force: true })
  }
}

const lines = [
  `flushIntervalMs ${FLUSH_INTERVAL_MS}; SessionStore runs ${STORE_SECONDS} s, the baseline ${BASELINE_SECONDS} s; ${os.cpus().length} cores (load average ${os.loadavg()[0].toFixed(1)} at the end), node ${process.version}, real file system (${os.tmpdir()}).`,
  "",
  "| sessions | file size | writer | durable merges/s | file writes/s | merge→durable p50 | p99 | × baseline |",
  "|---:|---:|---|---:|---:|---:|---:|---:|"
]
for (const { n, bytes, baseline, saturated, paced } of rows) {
  const size = `${fmt(bytes / 1024 / 1024, 1)} MiB`
  const row = (name, r) =>
    `| ${fmt(n)} | ${size} | ${name} | ${fmt(r.durablePerSecond, r.durablePerSecond < 100 ? 1 : 0)} | ${fmt(r.writesPerSecond, 1)} | ${fmt(r.p50, 1)} ms | ${fmt(r.p99, 1)} ms | ${r === baseline ? "1×" : `**${fmt(r.durablePerSecond / baseline.durablePerSecond)}×**`} |`
  lines.push(
    row("OpenClaw: lock, read, parse, change one, write + fsync, unlock — per update", baseline),
    row("SessionStore, saturated (one fiber merging flat out)", saturated),
    row(`SessionStore, paced at ${fmt(PACED_RATE)} merges/s`, paced)
  )
}
process.stdout.write(`${lines.join("\n")}\n`)
