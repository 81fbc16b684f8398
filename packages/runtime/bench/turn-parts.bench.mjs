// Where a turn's time goes: each part of a turn measured alone, on the real file system,
// against plain Node doing the same file work. Every row runs its operation 2,000 times
// from 100 concurrent fibers, so the main thread is saturated and wall time per operation
// is what the operation costs the process; "cpu" adds every thread (GC helpers, libuv).
// Run after a build: `npm run bench` (or `node bench/turn-parts.bench.mjs` in packages/runtime).
import { LanguageModel } from "@effect/ai"
import * as Prompt from "@effect/ai/Prompt"
import { NodeContext } from "@effect/platform-node"
import { Clock, Deferred, Effect, FiberSet, Layer, ManagedRuntime } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { defaults, TurnFinished, UsageObserved } from "@converge/domain"
import {
  Lanes,
  LifecycleEvents,
  layer as runnerLayer,
  Reconciler,
  Runner,
  RunnerConfig,
  Status,
  trusted
} from "@converge/runner"
import { SessionStore } from "@converge/store"
import { LocalModel } from "@converge/testkit"
import { Transcript } from "@converge/transcript"

const OPS = Number(process.env.BENCH_PART_OPS ?? 2000)
const FIBERS = 100
const root = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), "converge-parts-bench-"))
// Without admission control: 100 fibers in a closed loop measure cost, not what a runtime admits.
const config = { ...defaults, sessionsDir: root, admissionMs: 0 }
const rt = ManagedRuntime.make(
  runnerLayer.pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        SessionStore.layerFile({ sessionsDir: root, flushIntervalMs: config.flushIntervalMs }),
        Transcript.layer({ sessionsDir: root, leaseMs: config.leaseMs }),
        LocalModel.layer({ replyMs: 0, summaryMs: 0 })
      )
    ),
    Layer.provideMerge(RunnerConfig.layer(config)),
    Layer.provideMerge(NodeContext.layer)
  )
)
const message = "question: lorem ipsum dolor sit amet ".repeat(4)
const rows = []

/** Runs `op(i)` OPS times from FIBERS fibers; records wall and all-thread CPU per operation. */
const measure = (name, op) =>
  Effect.gen(function* () {
    let next = 0
    const worker = Effect.gen(function* () {
      while (next < OPS) yield* op(next++)
    })
    // Warm-up: the first calls compile code and fill caches.
    for (let i = 0; i < 20; i++) yield* op(OPS + i)
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    yield* Effect.all(
      Array.from({ length: FIBERS }, () => worker),
      { concurrency: "unbounded", discard: true }
    )
    const wall = ((performance.now() - t0) * 1000) / OPS
    const c = process.cpuUsage(c0)
    rows.push({ name, wall, cpu: (c.user + c.system) / OPS })
  })

const program = Effect.gen(function* () {
  const runner = yield* Runner
  const transcript = yield* Transcript
  const store = yield* SessionStore
  const reconciler = yield* Reconciler
  const status = yield* Status
  const lanes = yield* Lanes
  const events = yield* LifecycleEvents
  const model = yield* LanguageModel.LanguageModel

  // 100 sessions with a few turns each, as the parts below find them.
  const keys = Array.from({ length: FIBERS }, (_, i) => `parts:${i}`)
  for (const key of keys) for (let t = 0; t < 3; t++) yield* runner.turn(key, message)
  const sessions = []
  for (const key of keys) sessions.push(yield* reconciler.session(key))
  const at = (i) => sessions[i % sessions.length]

  // What the harness itself costs per operation (forking the fibers, the loop).
  yield* measure("an empty operation (the harness itself)", () => Effect.void)
  // Plain Node: one line written and fsynced, to a file per session.
  const plainFds = keys.map((_, i) => fs.openSync(path.join(root, `plain-${i}.jsonl`), "a"))
  const line = Buffer.from(
    `${JSON.stringify({ type: "message", message: { role: "user", content: message } })}\n`
  )
  const plainAppend = (i) =>
    Effect.async((resume) => {
      const fd = plainFds[i % plainFds.length]
      fs.write(fd, line, 0, line.length, null, (e) =>
        e ? resume(Effect.die(e)) : fs.fsync(fd, (e2) => resume(e2 ? Effect.die(e2) : Effect.void))
      )
    })
  yield* measure("plain Node: write + fsync of one line", plainAppend)
  yield* measure("Transcript.append: one entry (lease held)", (i) =>
    transcript.append(at(i).sessionId, [
      { type: "message", message: { role: "user", content: message, timestamp: 0 } }
    ])
  )
  yield* measure("Transcript.buildContext", (i) => transcript.buildContext(at(i).sessionId))

  // The model port: @effect/ai's LanguageModel, over the local model and over a model that
  // answers a constant (what is left is @effect/ai's own work: a span, and the response
  // decoded by a Schema it builds on every call).
  const prompt = Prompt.fromMessages([
    Prompt.makeMessage("user", { content: [Prompt.makePart("text", { text: message })] })
  ])
  yield* measure("LanguageModel.generateText: local model", () => model.generateText({ prompt }))
  const constant = yield* LanguageModel.make({
    generateText: () =>
      Effect.succeed([
        { type: "text", text: "ok" },
        { type: "finish", reason: "stop", usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 } }
      ]),
    streamText: () => Effect.die("not used")
  })
  yield* measure("LanguageModel.generateText: constant answer", () => constant.generateText({ prompt }))

  const usage = (s, now) =>
    new UsageObserved(
      {
        sessionKey: s.sessionKey,
        sessionId: s.sessionId,
        generation: s.generation,
        at: now,
        runId: "r",
        input: 10,
        output: 2,
        context: 12,
        asOfSeq: now
      },
      trusted
    )
  const finished = (s, now) =>
    new TurnFinished(
      {
        sessionKey: s.sessionKey,
        sessionId: s.sessionId,
        generation: s.generation,
        at: now,
        runId: "r",
        outcome: "completed",
        seq: now
      },
      trusted
    )
  yield* measure("SessionStore.merge", (i) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      store.merge(at(i).sessionKey, { sessionId: at(i).sessionId, updatedAt: now + i })
    )
  )
  yield* measure("Reconciler.applyAll: usage + finished", (i) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      reconciler.applyAll([usage(at(i), now + i), finished(at(i), now + i)])
    )
  )
  yield* measure("LifecycleEvents.publish", (i) => events.publish(finished(at(i), i)))
  yield* measure("Status.get", (i) => status.get(at(i).sessionKey))
  yield* measure("Lanes.withLane (empty body)", (i) => lanes.withLane(at(i).sessionKey, Effect.void))
  const set = yield* FiberSet.make()
  yield* measure("a turn's fiber: FiberSet.run + Deferred", () =>
    Effect.gen(function* () {
      const done = yield* Deferred.make()
      yield* FiberSet.run(set, Deferred.succeed(done, undefined))
      yield* Deferred.await(done)
    })
  )
  yield* measure("Runner.turn: a session's later turn", (i) => runner.turn(at(i).sessionKey, message))
  yield* measure("Runner.turn: a new session's first turn", (i) => runner.turn(`parts:new:${i}`, message))
  yield* Effect.sync(() => {
    for (const fd of plainFds) fs.closeSync(fd)
  })
})

const main = async () => {
  await rt.runPromise(Effect.scoped(program))
  await rt.dispose()
  fs.rmSync(root, { recursive: true, force: true })
  console.log("")
  console.log(
    `| part of a turn (${OPS} operations from ${FIBERS} fibers) | wall µs/op | cpu µs/op (all threads) |`
  )
  console.log("|---|--:|--:|")
  for (const r of rows) console.log(`| ${r.name} | ${r.wall.toFixed(0)} | ${r.cpu.toFixed(0)} |`)
  console.log("")
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
