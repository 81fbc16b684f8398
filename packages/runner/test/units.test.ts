import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Ref, Stream, TestClock } from "effect"
import { TurnStarted } from "@converge/domain"
import { SessionStore } from "@converge/store"
import { FileSystem } from "@effect/platform"
import { chooseCut } from "../src/cutPoint.js"
import { Lanes } from "../src/Lanes.js"
import { LifecycleEvents } from "../src/LifecycleEvents.js"
import { Reconciler } from "../src/Reconciler.js"
import { Runner } from "../src/Runner.js"
import { RunnerConfig } from "../src/RunnerConfig.js"
import { advance, done, makeLayer, SESSIONS_DIR, settle, words } from "./harness.js"

const lanes = (laneQueue: number) => Lanes.Default.pipe(Layer.provide(RunnerConfig.layer({ laneQueue })))

describe("Lanes", () => {
  it.scoped("runs turns of one session in arrival order, one at a time", () =>
    Effect.gen(function* () {
      const l = yield* Lanes
      const order = yield* Ref.make<Array<number>>([])
      const gate = yield* Deferred.make<void>()
      const first = yield* Effect.fork(
        l.withLane(
          "k",
          Effect.zipRight(
            Deferred.await(gate),
            Ref.update(order, (o) => [...o, 0])
          )
        )
      )
      yield* settle
      const rest = yield* Effect.forEach([1, 2, 3], (i) =>
        Effect.fork(
          l.withLane(
            "k",
            Ref.update(order, (o) => [...o, i])
          )
        )
      )
      yield* settle
      expect(yield* l.state("k")).toEqual({ running: true, waiting: 3 })
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(first)
      yield* Effect.forEach(rest, Fiber.join)
      expect(yield* Ref.get(order)).toEqual([0, 1, 2, 3])
      expect(yield* l.state("k")).toEqual({ running: false, waiting: 0 })
    }).pipe(Effect.provide(lanes(64)))
  )

  it.scoped("refuses the next turn with LaneFull when laneQueue turns wait", () =>
    Effect.gen(function* () {
      const l = yield* Lanes
      yield* Effect.fork(l.withLane("k", Effect.never))
      yield* Effect.fork(l.withLane("k", Effect.void))
      yield* Effect.fork(l.withLane("k", Effect.void))
      yield* settle
      const refused = yield* Effect.exit(l.withLane("k", Effect.void))
      expect(Exit.isFailure(refused)).toBe(true)
      expect(JSON.stringify(refused)).toContain("LaneFull")
      // another session has its own lane
      expect(yield* l.withLane("other", Effect.succeed(1))).toBe(1)
    }).pipe(Effect.provide(lanes(2)))
  )

  it.scoped("releases the lane on interruption, running or queued", () =>
    Effect.gen(function* () {
      const l = yield* Lanes
      const running = yield* Effect.fork(l.withLane("k", Effect.never))
      const queued = yield* Effect.fork(l.withLane("k", Effect.never))
      yield* settle
      yield* Fiber.interrupt(queued)
      expect(yield* l.state("k")).toEqual({ running: true, waiting: 0 })
      yield* Fiber.interrupt(running)
      expect(yield* l.state("k")).toEqual({ running: false, waiting: 0 })
      expect(yield* l.withLane("k", Effect.succeed("free"))).toBe("free")
    }).pipe(Effect.provide(lanes(64)))
  )
})

describe("LifecycleEvents", () => {
  const events = (eventBufferSize: number) =>
    LifecycleEvents.Default.pipe(Layer.provide(RunnerConfig.layer({ eventBufferSize })))
  const event = (i: number) =>
    new TurnStarted({ sessionKey: "k", sessionId: "s", generation: 1, at: i, runId: `r${i}` })

  it.scoped("a consumer within the buffer loses nothing", () =>
    Effect.gen(function* () {
      const e = yield* LifecycleEvents
      const stream = yield* e.subscribe()
      for (let i = 0; i < 8; i++) yield* e.publish(event(i))
      const got = yield* Stream.runCollect(Stream.take(stream, 8))
      expect([...got].map((x) => x.at)).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    }).pipe(Effect.provide(events(8)))
  )

  it.scoped("a consumer more than eventBufferSize behind gets Resync, then the newest events", () =>
    Effect.gen(function* () {
      const e = yield* LifecycleEvents
      const stream = yield* e.subscribe()
      for (let i = 0; i < 20; i++) yield* e.publish(event(i))
      const got = [...(yield* Stream.runCollect(Stream.take(stream, 5)))]
      expect(got[0]?._tag).toBe("Resync")
      expect(got.slice(1).map((x) => x.at)).toEqual([16, 17, 18, 19])
    }).pipe(Effect.provide(events(4)))
  )

  it.scoped("filters by session key", () =>
    Effect.gen(function* () {
      const e = yield* LifecycleEvents
      const stream = yield* e.subscribe({ sessionKey: "k2" })
      yield* e.publish(event(1))
      yield* e.publish(
        new TurnStarted({ sessionKey: "k2", sessionId: "s", generation: 1, at: 2, runId: "r" })
      )
      const got = yield* Stream.runCollect(Stream.take(stream, 1))
      expect([...got].map((x) => x.sessionKey)).toEqual(["k2"])
    }).pipe(Effect.provide(events(8)))
  )
})

describe("chooseCut", () => {
  const msg = (role: string, chars: number, content?: unknown) => ({
    entry: {
      type: "message" as const,
      id: `${role}${chars}`,
      parentId: null,
      timestamp: "t",
      message: { role, content: content ?? "x".repeat(chars) }
    }
  })
  it("keeps the most recent keepRecentTokens", () => {
    const entries = [msg("user", 400), msg("assistant", 400), msg("user", 400), msg("assistant", 400)]
    expect(chooseCut(entries, 150)).toBe(2)
    expect(chooseCut(entries, 100)).toBe(3)
    expect(chooseCut(entries, 10_000)).toBeUndefined()
  })
  it("never separates a tool result from its call", () => {
    const entries = [
      msg("user", 400),
      msg("assistant", 40, [{ type: "toolCall", id: "c1", name: "weather", arguments: {} }]),
      msg("toolResult", 400),
      msg("assistant", 40)
    ]
    const cut = chooseCut(entries, 100)
    expect(cut).toBe(1)
  })
})

describe("Runner timeouts", () => {
  it.scoped("a turn queued behind another times out from submission and never runs", () =>
    Effect.gen(function* () {
      const runner = yield* Runner
      const first = yield* Effect.fork(runner.turn("k:1", "slow one", { timeoutMs: 60_000 }))
      yield* settle
      const second = yield* Effect.fork(runner.turn("k:1", "queued", { timeoutMs: 30_000 }))
      yield* advance(30_000)
      const r2 = yield* done(second)
      expect(r2.outcome).toBe("timed_out")
      expect(r2.timeout).toBe("turn")
      yield* advance(30_000)
      const r1 = yield* done(first)
      expect(r1.outcome).toBe("timed_out")
      yield* TestClock.adjust(0)
      const status = yield* runner.status("k:1")
      expect(status.lastRun?.outcome).toBe("timed_out")
    }).pipe(Effect.provide(makeLayer({ config: { localReplyMs: 100_000 } })))
  )

  it.scoped("a turn that fits runs and reports its usage snapshot at its prompt's last entry", () =>
    Effect.gen(function* () {
      const runner = yield* Runner
      const r = yield* runner.turn("k:2", words(100))
      expect(r.outcome).toBe("completed")
      expect(r.status.tokens.asOfSeq).toBe(0)
      expect(r.status.tokens.fresh).toBe(true)
      expect(r.status.lastRun?.runId).toBe(r.runId)
    }).pipe(Effect.provide(makeLayer()))
  )
})

describe("an entry of sessions.json that is not a session entry", () => {
  const transcriptOf = (id: string, key: string) =>
    `${JSON.stringify({ type: "session", version: 3, id, timestamp: "2026-11-01T00:00:00.000Z", cwd: "/", sessionKey: key })}\n`
  const bad = { sessionId: 42, note: "written by hand" }
  const files = {
    [`${SESSIONS_DIR}/sessions.json`]: JSON.stringify({ "agent:bad": bad }),
    // A transcript that names the same key: recovery must not adopt it over the kept value.
    [`${SESSIONS_DIR}/7b0c7a52-5d0e-4a43-9d6e-1f3b2c4d5e6f.jsonl`]: transcriptOf(
      "7b0c7a52-5d0e-4a43-9d6e-1f3b2c4d5e6f",
      "agent:bad"
    )
  }

  it.scoped(
    "is not served: turns, status and compactions answer SessionUnavailable, and the value stays",
    () =>
      Effect.gen(function* () {
        const runner = yield* Runner
        const reconciler = yield* Reconciler
        const store = yield* SessionStore
        yield* reconciler.recover()
        const turn = yield* Effect.flip(runner.turn("agent:bad", "hello"))
        expect(turn._tag).toBe("SessionUnavailable")
        expect(turn.message).toContain("agent:bad")
        expect((yield* Effect.flip(runner.status("agent:bad")))._tag).toBe("SessionUnavailable")
        expect((yield* Effect.flip(runner.compact("agent:bad")))._tag).toBe("SessionUnavailable")
        // Other keys work as always.
        expect((yield* runner.turn("agent:good", "hello")).outcome).toBe("completed")
        yield* store.flush
        const fs = yield* FileSystem.FileSystem
        const onDisk = JSON.parse(yield* fs.readFileString(`${SESSIONS_DIR}/sessions.json`))
        expect(onDisk["agent:bad"]).toEqual(bad)
        expect(Object.keys(onDisk)).toEqual(["agent:bad", "agent:good"])
      }).pipe(Effect.provide(makeLayer({ files })))
  )
})
