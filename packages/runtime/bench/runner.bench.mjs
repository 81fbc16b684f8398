// Benchmarks of the runner on the real file system, in a temporary directory.
// Run from the package (after a build): `npm run bench`.
//
// 1. Turns per second for BENCH_TURN_SESSIONS (1,000) concurrent sessions with a 0 ms local
//    model, against the plain transcript appends the same turns need (two appended lines per
//    turn, each fsynced, as Converge does).
// 2. On the real clock: how far past turnTimeoutMs (200 ms) turns return while compactions hang,
//    with 1,000 sessions offering 1,000 turns per second in all and one compaction in ten hanging.
// 3. Overload: offered 2× and 4× the saturation rate measured in 1 for BENCH_OVERLOAD_SECONDS
//    (10), open loop, over 1,000 sessions with a 1 s turn timeout: completed turns per second,
//    how fast a refused turn is refused (Overloaded), how far admitted turns overshoot.
import { LanguageModel } from "@effect/ai"
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer, ManagedRuntime } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { SUMMARY_PROMPT_PREFIX } from "@converge/domain"
import { layer as runnerLayer, Runner, RunnerConfig } from "@converge/runner"
import { SessionStore } from "@converge/store"
import { LocalModel } from "@converge/testkit"
import { Transcript } from "@converge/transcript"
import { defaults } from "@converge/domain"
import { Scheduling, Telemetry } from "../dist/index.js"

const SESSIONS = Number(process.env.BENCH_TURN_SESSIONS ?? 1000)
const TURNS_PER_SESSION = Number(process.env.BENCH_TURNS_PER_SESSION ?? 3)
const OVERSHOOT_SECONDS = Number(process.env.BENCH_OVERSHOOT_SECONDS ?? 5)
const OVERLOAD_SECONDS = Number(process.env.BENCH_OVERLOAD_SECONDS ?? 10)
const root = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), "converge-runner-bench-"))
const log = (...args) => console.error(...args)

const runtimeOf = (config, model) =>
  ManagedRuntime.make(
    runnerLayer.pipe(
      Layer.provideMerge(
        Layer.mergeAll(
          SessionStore.layerFile({
            sessionsDir: config.sessionsDir,
            flushIntervalMs: config.flushIntervalMs
          }),
          Transcript.layer({ sessionsDir: config.sessionsDir, leaseMs: config.leaseMs }),
          model
        )
      ),
      Layer.provideMerge(RunnerConfig.layer(config)),
      Layer.provideMerge(NodeContext.layer),
      // As the runtime runs: spans off unless OTEL_EXPORTER_OTLP_ENDPOINT asks for traces.
      Layer.provide(Telemetry.tracingLayer(Telemetry.settingsFromEnv(process.env))),
      Layer.provide(
        process.env.BENCH_SLICE_MS === "off"
          ? Layer.empty
          : Scheduling.layerSliced(Number(process.env.BENCH_SLICE_MS ?? Scheduling.defaultSliceMs))
      )
    )
  )

const percentile = (xs, p) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

// --- 1. turn throughput -------------------------------------------------------------------------
const turnThroughput = async () => {
  const dir = path.join(root, "turns")
  fs.mkdirSync(dir, { recursive: true })
  // Saturation is measured without admission control (it would refuse the closed loop's
  // 1,000 turns in flight: they take longer than the 1 s budget to drain).
  const config = { ...defaults, sessionsDir: dir, localReplyMs: 0, localSummaryMs: 0, admissionMs: 0 }
  const rt = runtimeOf(config, LocalModel.layer({ replyMs: 0, summaryMs: 0 }))
  const runner = await rt.runPromise(Runner)
  const message = "question: lorem ipsum dolor sit amet ".repeat(4)
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: SESSIONS }, async (_, i) => {
      for (let t = 0; t < TURNS_PER_SESSION; t++) {
        const r = await rt.runPromise(runner.turn(`bench:${i}`, message))
        if (r.outcome !== "completed") throw new Error(`turn ${r.outcome}`)
      }
    })
  )
  const seconds = (performance.now() - t0) / 1000
  await rt.dispose()
  const turns = SESSIONS * TURNS_PER_SESSION

  // Baseline: the same turns' transcript appends, plain Node: user line + fsync, reply line + fsync.
  const plainDir = path.join(root, "plain")
  fs.mkdirSync(plainDir, { recursive: true })
  const line = (role, seq) =>
    `${JSON.stringify({ type: "message", id: `e${seq}`, parentId: seq === 0 ? null : `e${seq - 1}`, timestamp: new Date().toISOString(), message: { role, content: message } })}\n`
  const p0 = performance.now()
  await Promise.all(
    Array.from({ length: SESSIONS }, async (_, i) => {
      const handle = await fsp.open(path.join(plainDir, `s${i}.jsonl`), "a")
      try {
        for (let t = 0; t < TURNS_PER_SESSION; t++) {
          await handle.appendFile(line("user", 2 * t))
          await handle.sync()
          await handle.appendFile(line("assistant", 2 * t + 1))
          await handle.sync()
        }
      } finally {
        await handle.close()
      }
    })
  )
  const plainSeconds = (performance.now() - p0) / 1000
  return { turns, perSecond: turns / seconds, plainPerSecond: turns / plainSeconds }
}

// --- 2. timeout overshoot while compactions hang -------------------------------------------------
const hangingModel = Effect.gen(function* () {
  const local = yield* LanguageModel.LanguageModel
  // A summary request is one whose system message starts with the prefix; one session in
  // ten (its messages say HANG) never gets its summary. Read from the messages, without
  // serializing the whole prompt on every call.
  const isSummary = (prompt) =>
    prompt.content.some((m) => m.role === "system" && m.content.startsWith(SUMMARY_PROMPT_PREFIX))
  const hangs = (prompt) =>
    prompt.content.some((m) =>
      m.role === "system"
        ? m.content.includes("HANG")
        : m.content.some((p) => p.type === "text" && p.text.includes("HANG"))
    )
  return yield* LanguageModel.make({
    generateText: (options) => {
      const summary = isSummary(options.prompt)
      if (summary && hangs(options.prompt)) return Effect.never
      return Effect.succeed([
        { type: "text", text: summary ? "summary" : "ok" },
        { type: "finish", reason: "stop", usage: { inputTokens: 10, outputTokens: 2, totalTokens: 12 } }
      ])
    },
    streamText: () => local.streamText({ prompt: "" })
  })
})

const overshoot = async (rate, sessions) => {
  const dir = path.join(root, `overshoot-${rate}`)
  fs.mkdirSync(dir, { recursive: true })
  const config = {
    ...defaults,
    sessionsDir: dir,
    turnTimeoutMs: 200,
    compactionWaitMs: 60_000,
    // Every turn's context passes the threshold, so every turn starts or joins a compaction.
    contextWindow: 120,
    reserveTokens: 20,
    keepRecentTokens: 10,
    drainTimeoutMs: 100
  }
  const model = Layer.effect(LanguageModel.LanguageModel, hangingModel).pipe(
    Layer.provide(LocalModel.layer({ replyMs: 0, summaryMs: 0 }))
  )
  const rt = runtimeOf(config, model)
  const runner = await rt.runPromise(Runner)
  const overshoots = []
  const outcomes = { completed: 0, timed_out: 0, failed: 0 }
  const pending = []
  const total = rate * OVERSHOOT_SECONDS
  const t0 = performance.now()
  for (let i = 0; i < total; i++) {
    // `rate` turns per second in all, round robin over the sessions.
    const due = t0 + (i * 1000) / rate
    const wait = due - performance.now()
    if (wait > 1) await new Promise((r) => setTimeout(r, wait))
    const s = i % sessions
    const text = `${s % 10 === 0 ? "HANG " : ""}turn ${i}: ${"lorem ipsum dolor sit amet ".repeat(20)}`
    const start = performance.now()
    pending.push(
      rt.runPromiseExit(runner.turn(`load:${s}`, text)).then((exit) => {
        if (exit._tag === "Failure") {
          // Refused at admission (past saturation): answered at once, not timed out.
          const tag = exit.cause._tag === "Fail" ? exit.cause.error._tag : "defect"
          outcomes[tag] = (outcomes[tag] ?? 0) + 1
          return
        }
        const r = exit.value
        outcomes[r.outcome]++
        if (r.outcome === "timed_out" && r.timeout === "turn")
          overshoots.push(performance.now() - start - 200)
      })
    )
  }
  await Promise.all(pending)
  const disposeStart = performance.now()
  await rt.dispose()
  return {
    rate,
    sessions,
    offered: total,
    seconds: (performance.now() - t0) / 1000,
    outcomes,
    p50: percentile(overshoots, 50) ?? Number.NaN,
    p99: percentile(overshoots, 99) ?? Number.NaN,
    max: Math.max(...overshoots),
    timedOut: overshoots.length,
    disposeMs: performance.now() - disposeStart
  }
}

// --- 3. overload: offered past saturation ----------------------------------------------------------
const overload = async (rate, sessions) => {
  const dir = path.join(root, `overload-${rate}`)
  fs.mkdirSync(dir, { recursive: true })
  const timeoutMs = 1000
  const config = {
    ...defaults,
    sessionsDir: dir,
    localReplyMs: 0,
    localSummaryMs: 0,
    turnTimeoutMs: timeoutMs,
    ...(process.env.BENCH_LEASE_MS ? { leaseMs: Number(process.env.BENCH_LEASE_MS) } : {})
  }
  const rt = runtimeOf(config, LocalModel.layer({ replyMs: 0, summaryMs: 0 }))
  const runner = await rt.runPromise(Runner)
  const message = "question: lorem ipsum dolor sit amet ".repeat(4)
  const refusedMs = []
  const overshoots = []
  const outcomes = { completed: 0, timed_out: 0, failed: 0, Overloaded: 0, other: 0 }
  let completedInWindow = 0
  const pending = []
  const total = Math.round(rate * OVERLOAD_SECONDS)
  const t0 = performance.now()
  const end = t0 + OVERLOAD_SECONDS * 1000
  let sent = 0
  const loopDelay = monitorEventLoopDelay({ resolution: 5 })
  loopDelay.enable()
  const trace = process.env.BENCH_TRACE_ADMISSION
    ? setInterval(() => {
        rt.runPromise(runner.admission).then((s) =>
          log(`admission ${rate.toFixed(0)}/s t=${(performance.now() - t0).toFixed(0)} ${JSON.stringify(s)}`)
        )
      }, 250)
    : undefined
  // Open loop: every tick sends the turns that are due, whatever came back.
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000))
    for (; sent < due; sent++) {
      const start = performance.now()
      pending.push(
        rt.runPromiseExit(runner.turn(`over:${sent % sessions}`, message)).then((exit) => {
          const now = performance.now()
          if (exit._tag === "Success") {
            outcomes[exit.value.outcome]++
            if (exit.value.outcome === "completed" && now <= end) completedInWindow++
            overshoots.push(Math.max(0, now - start - timeoutMs))
            if (process.env.BENCH_DEBUG_OVERSHOOT && now - start - timeoutMs > 5)
              log(
                `late ${exit.value.outcome} ${(now - start).toFixed(0)} ms sent at ${(start - t0).toFixed(0)}`
              )
          } else {
            const tag = exit.cause._tag === "Fail" ? exit.cause.error._tag : "other"
            if (tag === "Overloaded") {
              outcomes.Overloaded++
              refusedMs.push(now - start)
            } else outcomes.other++
          }
        })
      )
    }
    await new Promise((r) => setTimeout(r, 5))
  }
  await Promise.all(pending)
  if (trace !== undefined) clearInterval(trace)
  loopDelay.disable()
  log(
    `event loop delay at ${rate.toFixed(0)}/s: p50 ${(loopDelay.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(loopDelay.percentile(99) / 1e6).toFixed(1)} ms, max ${(loopDelay.max / 1e6).toFixed(1)} ms`
  )
  const stats = await rt.runPromise(runner.admission)
  await rt.dispose()
  return {
    rate,
    sessions,
    offered: total,
    outcomes,
    completedPerSecond: completedInWindow / OVERLOAD_SECONDS,
    refusedP99: percentile(refusedMs, 99) ?? Number.NaN,
    overshootP99: percentile(overshoots, 99) ?? Number.NaN,
    capacity: stats.capacity
  }
}

const main = async () => {
  log(`runner bench in ${root}`)
  const a = await turnThroughput()
  const b = await overshoot(1000, SESSIONS)
  // The same story at a load this machine sustains: each session gets a turn every second.
  const c = await overshoot(100, 100)
  const overloads = []
  for (const factor of [2, 4]) overloads.push({ factor, ...(await overload(a.perSecond * factor, SESSIONS)) })
  const ratio = a.perSecond / a.plainPerSecond
  console.log("")
  console.log(`| runner measure | Converge | plain | ratio | target |`)
  console.log(`|---|--:|--:|--:|---|`)
  console.log(
    `| turns/s, ${SESSIONS} concurrent sessions × ${TURNS_PER_SESSION} turns, 0 ms local model | ${a.perSecond.toFixed(0)} | ${a.plainPerSecond.toFixed(0)} (2 fsynced appends per turn) | ${(ratio * 100).toFixed(0)} % | ≥ 50 % |`
  )
  for (const o of [b, c]) {
    console.log(
      `| overshoot past a 200 ms turn timeout, p50 / p99 (${o.timedOut} timed-out turns of ${o.offered} offered at ${o.rate}/s over ${o.sessions} sessions, ${o.outcomes.Overloaded ?? 0} refused, 1 compaction in 10 hanging) | ${o.p50.toFixed(2)} ms / ${o.p99.toFixed(2)} ms | — | — | p99 < 5 ms |`
    )
  }
  for (const o of overloads) {
    console.log(
      `| offered ${o.factor}× saturation (${o.rate.toFixed(0)}/s for ${OVERLOAD_SECONDS} s over ${o.sessions} sessions, 1 s timeout): completed/s · refused · refusal p99 · admitted overshoot p99 | ${o.completedPerSecond.toFixed(0)}/s (${((o.completedPerSecond / a.perSecond) * 100).toFixed(0)} % of saturation) · ${o.outcomes.Overloaded} of ${o.offered} · ${o.refusedP99.toFixed(2)} ms · ${o.overshootP99.toFixed(2)} ms | — | — | ≥ 90 % · refusal < 5 ms · overshoot p99 < 5 ms |`
    )
  }
  console.log("")
  log(`overload runs: ${JSON.stringify(overloads)}`)
  log(`overshoot runs: ${JSON.stringify([b, c])}`)
  fs.rmSync(root, { recursive: true, force: true })
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
