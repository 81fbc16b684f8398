/**
 * The scenarios of SCENARIOS.md as functions of the layer they run on. Times are virtual
 * (TestClock) and exact.
 */
import { expect } from "@effect/vitest"
import { FileSystem } from "@effect/platform"
import { Clock, Context, Effect, Exit, Fiber, Layer, Option, Ref, Scope, Stream } from "effect"
import * as nodeFs from "node:fs"
import * as path from "node:path"
import type { LifecycleEvent, SessionEntry, SessionId } from "@converge/domain"
import { SessionStore } from "@converge/store"
import { LocalModelControl, MemoryFileSystem } from "@converge/testkit"
import { Transcript } from "@converge/transcript"
import { CompactionSupervisor } from "../src/CompactionSupervisor.js"
import { Lanes } from "../src/Lanes.js"
import { LifecycleEvents } from "../src/LifecycleEvents.js"
import { Reconciler } from "../src/Reconciler.js"
import { Runner } from "../src/Runner.js"
import {
  advance,
  collectEvents,
  done,
  type HarnessOptions,
  makeLayer,
  SESSIONS_DIR,
  settle,
  words
} from "./harness.js"

type Scenario = (options: HarnessOptions) => Effect.Effect<void, unknown, Scope.Scope>

const KEY = "agent:main:telegram:dm:1"

type Services = Layer.Layer.Success<ReturnType<typeof makeLayer>>

/**
 * Runs `body` on a fresh runtime. Afterwards no compaction is left and the runtime closes
 * without waiting on anything; a failed body still gets its runtime closed (by draining).
 */
const onRuntime = <A, E>(
  options: HarnessOptions,
  body: Effect.Effect<A, E, Services | Scope.Scope>
): Effect.Effect<A, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(makeLayer(options), scope)
    const exit = yield* Effect.exit(
      Effect.gen(function* () {
        const result = yield* body
        yield* settle
        expect(yield* Context.get(context, CompactionSupervisor).size).toBe(0)
        return result
      }).pipe(Effect.provide(context))
    )
    const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
    yield* settle
    if (Exit.isSuccess(exit) && options.variant?.realIo !== true) {
      const closed = yield* Fiber.poll(closing)
      expect(Option.isSome(closed)).toBe(true)
    } else {
      yield* advance(options.config?.drainTimeoutMs ?? 10_000)
    }
    yield* Fiber.join(closing)
    return yield* exit
  })

/** Runs `first` on one runtime, then `second` on a new one over the same files (a restart). */
const acrossRestart = <A, B, E1, E2>(
  options: HarnessOptions,
  first: Effect.Effect<A, E1, Services | Scope.Scope>,
  second: (a: A) => Effect.Effect<B, E2, Services | Scope.Scope>
) =>
  Effect.gen(function* () {
    const fs = yield* MemoryFileSystem.makeWith({ files: options.files ?? {} })
    const shared = { ...options, fileSystem: Layer.succeed(FileSystem.FileSystem, fs) }
    const a = yield* onRuntime(shared, first)
    return yield* onRuntime(shared, second(a))
  })

/** Runs `n` quick turns of about `tokens` tokens each (no compaction yet). */
const prime = (key: string, n: number, tokens: number) =>
  Effect.gen(function* () {
    const runner = yield* Runner
    for (let i = 0; i < n; i++) {
      const result = yield* runner.turn(key, words(tokens, `q${i}`))
      expect(result.outcome).toBe("completed")
    }
  })

const entryOf = (key: string) =>
  SessionStore.pipe(
    Effect.flatMap((store) => store.get(key)),
    Effect.map((entry) => Option.getOrThrow(entry))
  )

const compactionsIn = (events: ReadonlyArray<LifecycleEvent>) =>
  events.filter(
    (e): e is Extract<LifecycleEvent, { _tag: "CompactionCompleted" }> => e._tag === "CompactionCompleted"
  )

/** Starts a turn that crosses the threshold with a slow summary (90 s) and lets it time out at 60 s. */
const lateCompaction = (key: string, primeTurns = 2) =>
  Effect.gen(function* () {
    const runner = yield* Runner
    const model = yield* LocalModelControl
    yield* prime(key, primeTurns, 900)
    yield* model.setLatency({ summaryMs: 90_000 })
    const start = yield* Clock.currentTimeMillis
    const fiber = yield* Effect.fork(runner.turn(key, words(1300, "late")))
    yield* advance(60_000)
    const result = yield* done(fiber)
    expect((yield* Clock.currentTimeMillis) - start).toBe(60_000)
    return result
  })

export const scenarios: Record<string, Scenario> = {
  "S1 a turn times out at 60 s while its compaction runs on; at 90 s the count and snapshot converge": (
    options
  ) =>
    onRuntime(
      options,
      Effect.gen(function* () {
        const seen = yield* collectEvents()
        const result = yield* lateCompaction(KEY)
        expect(result.outcome).toBe("timed_out")
        expect(result.timeout).toBe("turn")
        expect(result.compaction.state).toBe("pending")
        expect(result.status.compaction.state).toBe("running")
        yield* advance(30_000)
        const runner = yield* Runner
        const status = yield* runner.status(KEY)
        expect(status.compactionCount).toBe(1)
        expect(status.compaction.state).toBe("idle")
        expect(status.tokens.fresh).toBe(true)
        const completed = compactionsIn(yield* seen)
        expect(completed).toHaveLength(1)
        expect(status.tokens.asOfSeq).toBe(completed[0]!.seq)
        expect(status.tokens.context).toBe(completed[0]!.tokensAfter)
        expect(status.lastCompaction?.compactionId).toBe(result.compaction.compactionId)
      })
    ),

  "S2 a session with 3 compactions (from an earlier run) counts the late one as the 4th": (options) =>
    acrossRestart(
      options,
      Effect.gen(function* () {
        const runner = yield* Runner
        for (let i = 0; i < 3; i++) {
          yield* prime(KEY, 2, 600)
          expect((yield* runner.compact(KEY, {})).state).toBe("completed")
        }
        expect((yield* runner.status(KEY)).compactionCount).toBe(3)
      }),
      () =>
        Effect.gen(function* () {
          const runner = yield* Runner
          expect((yield* runner.status(KEY)).compactionCount).toBe(3)
          yield* lateCompaction(KEY)
          yield* advance(30_000)
          expect((yield* runner.status(KEY)).compactionCount).toBe(4)
        })
    ),

  "S3 a context overflow compacts, retries once and delivers the retried reply": (options) =>
    acrossRestart(
      options,
      Effect.gen(function* () {
        const runner = yield* Runner
        yield* prime(KEY, 2, 600)
        expect((yield* runner.compact(KEY, {})).state).toBe("completed")
      }),
      () =>
        Effect.gen(function* () {
          const runner = yield* Runner
          const model = yield* LocalModelControl
          yield* prime(KEY, 2, 600)
          const before = (yield* runner.status(KEY)).compactionCount
          expect(before).toBe(1)
          yield* model.failNext("overflow", 1)
          const result = yield* runner.turn(KEY, words(100, "overflowing"))
          expect(result.outcome).toBe("completed")
          expect(result.reply).toBeDefined()
          expect(result.compaction.state).toBe("completed")
          expect((yield* runner.status(KEY)).compactionCount).toBe(before + 1)
          const replies = (yield* model.calls).filter((c) => c.kind === "reply")
          // the two priming turns, the overflowing call and exactly one retry
          expect(replies.length).toBe(2 + 2)
          yield* model.failNext("overflow", 2)
          const twice = yield* runner.turn(KEY, words(100, "still overflowing"))
          expect(twice.outcome).toBe("failed")
          expect(twice.error?._tag).toBe("ContextOverflow")
        })
    ),

  "S4 the same CompactionCompleted applied twice (redelivery, then recovery) counts once": (options) =>
    onRuntime(
      options,
      Effect.gen(function* () {
        const runner = yield* Runner
        const reconciler = yield* Reconciler
        const seen = yield* collectEvents()
        yield* prime(KEY, 2, 600)
        yield* runner.compact(KEY, {})
        yield* settle
        const [completed] = compactionsIn(yield* seen)
        expect(completed).toBeDefined()
        yield* reconciler.apply(completed!)
        yield* reconciler.recover(KEY)
        yield* reconciler.apply(completed!)
        const status = yield* runner.status(KEY)
        expect(status.compactionCount).toBe(1)
        expect(status.tokens.asOfSeq).toBe(completed!.seq)
      })
    ),

  "S5 a run-finalization snapshot older than the compaction does not overwrite it": (options) =>
    onRuntime(
      options,
      Effect.gen(function* () {
        const runner = yield* Runner
        const reconciler = yield* Reconciler
        const seen = yield* collectEvents()
        yield* prime(KEY, 3, 600)
        yield* settle
        const usage = (yield* seen).filter((e) => e._tag === "UsageObserved").at(-1)!
        yield* runner.compact(KEY, {})
        const after = yield* runner.status(KEY)
        yield* reconciler.apply(usage)
        const status = yield* runner.status(KEY)
        expect(status.tokens).toEqual(after.tokens)
        expect(status.compactionCount).toBe(1)
      })
    ),

  "S6 /compact during a turn and during an auto-compaction joins the running one": (options) =>
    onRuntime(
      options,
      Effect.gen(function* () {
        const runner = yield* Runner
        const model = yield* LocalModelControl
        yield* prime(KEY, 3, 900)
        yield* model.setLatency({ summaryMs: 30_000, replyMs: 5_000 })
        const turn = yield* Effect.fork(runner.turn(KEY, words(900, "auto")))
        yield* settle
        const manual = yield* Effect.fork(runner.compact(KEY, { instructions: "ignored", waitMs: 120_000 }))
        const second = yield* Effect.fork(runner.compact(KEY, { waitMs: 120_000 }))
        yield* advance(30_000)
        yield* advance(5_000)
        const [m, s, t] = [yield* done(manual), yield* done(second), yield* done(turn)]
        expect(m.joined).toBe(true)
        expect(s.joined).toBe(true)
        expect(m.compactionId).toBe(t.compaction.compactionId)
        expect(m.state).toBe("completed")
        expect(t.outcome).toBe("completed")
        const summaries = (yield* model.calls).filter((c) => c.kind === "summary")
        expect(summaries).toHaveLength(1)
        expect((yield* runner.status(KEY)).compactionCount).toBe(1)
      })
    ),

  "S7 a summary that never returns fails at 900 s, writes nothing, frees the lane": (options) =>
    onRuntime(
      options,
      Effect.gen(function* () {
        const runner = yield* Runner
        const model = yield* LocalModelControl
        const transcript = yield* Transcript
        const lanes = yield* Lanes
        const seen = yield* collectEvents()
        yield* prime(KEY, 3, 900)
        yield* model.hangSummaries(true)
        const turn = yield* Effect.fork(runner.turn(KEY, words(900, "stuck")))
        yield* advance(60_000)
        expect((yield* done(turn)).outcome).toBe("timed_out")
        const sessionId = (yield* runner.status(KEY)).sessionId as SessionId
        const before = yield* transcript.fold(sessionId)
        yield* advance(840_000)
        const failed = (yield* seen).filter((e) => e._tag === "CompactionFailed")
        expect(failed).toHaveLength(1)
        expect(failed[0]).toMatchObject({ reason: "timeout" })
        const after = yield* transcript.fold(sessionId)
        expect(after.compactionIndex).toBe(0)
        expect(after.lastSeq).toBe(before.lastSeq)
        expect(yield* lanes.state(KEY)).toEqual({ running: false, waiting: 0 })
        yield* model.hangSummaries(false)
        yield* model.setLatency({ summaryMs: 0 })
        const next = yield* runner.turn(KEY, "short question")
        expect(next.outcome).toBe("completed")
      })
    ),

  "S8 the next turn waits at most the compaction wait; the late entry covers only what was before its cut": (
    options
  ) =>
    onRuntime(
      { ...options, config: { ...options.config, compactionWaitMs: 10_000 } },
      Effect.gen(function* () {
        const runner = yield* Runner
        const model = yield* LocalModelControl
        const transcript = yield* Transcript
        const seen = yield* collectEvents()
        yield* prime(KEY, 3, 900)
        yield* model.setLatency({ summaryMs: 90_000 })
        const first = yield* Effect.fork(runner.turn(KEY, words(900, "first")))
        yield* advance(10_000)
        const r1 = yield* done(first)
        expect(r1.outcome).toBe("timed_out")
        expect(r1.timeout).toBe("compactionWait")
        expect(r1.compaction.state).toBe("pending")
        // The next turn: the context is still over the threshold, so it gives up after 10 s.
        const second = yield* Effect.fork(runner.turn(KEY, "and another thing"))
        yield* advance(10_000)
        const r2 = yield* done(second)
        expect(r2.outcome).toBe("timed_out")
        expect(r2.timeout).toBe("compactionWait")
        yield* advance(70_000)
        const sessionId = r1.sessionId as SessionId
        const read = yield* transcript.read(sessionId)
        const compaction = read.entries.find((e) => e.entry.type === "compaction")!
        const last = read.entries.filter((e) => e.entry.type !== "compaction").at(-1)!
        // parent: the file's last entry; the new messages stay after the cut
        expect(compaction.entry.parentId).toBe(last.entry.id)
        const context = yield* transcript.buildContext(sessionId)
        const texts = context.entries.map((e) => JSON.stringify(e.entry))
        expect(texts.some((t) => t.includes("and another thing"))).toBe(true)
        const status = yield* runner.status(KEY)
        const completed = compactionsIn(yield* seen)[0]!
        expect(status.tokens.asOfSeq).toBe(completed.seq)
        // a turn that fits now runs, and its usage (prompt ends after the compaction) is newer
        yield* model.setLatency({ summaryMs: 0 })
        const third = yield* runner.turn(KEY, "fits now")
        expect(third.outcome).toBe("completed")
        expect(third.status.tokens.asOfSeq).toBeGreaterThan(completed.seq)
        expect(third.status.compactionCount).toBe(1)
      })
    ),

  "S10 the store says 0, the transcript holds 4 compactions: status shows 4 first thing": (options) =>
    onRuntime(
      { ...options, files: fixtureFiles() },
      Effect.gen(function* () {
        const runner = yield* Runner
        const status = yield* runner.status("agent:main:telegram:dm:4242")
        expect(status.compactionCount).toBe(4)
        expect(status.tokens.context).toBe(12300)
        expect(status.tokens.asOfSeq).toBe(23)
        expect(status.tokens.fresh).toBe(true)
      })
    ),

  "S11 a reset while the old generation compacts: the late completion changes nothing new": (options) =>
    onRuntime(
      options,
      Effect.gen(function* () {
        const runner = yield* Runner
        const model = yield* LocalModelControl
        const store = yield* SessionStore
        yield* prime(KEY, 3, 900)
        const first = yield* runner.status(KEY)
        yield* store.merge(KEY, {
          sessionId: first.sessionId,
          generation: first.generation,
          sessionStartedAt: (yield* entryOf(KEY)).sessionStartedAt ?? 0,
          deliveryContext: { channel: "telegram", to: "user:1" }
        } as SessionEntry)
        yield* model.setLatency({ summaryMs: 90_000 })
        const old = yield* Effect.fork(runner.compact(KEY, { waitMs: 0 }))
        yield* settle
        expect((yield* done(old)).state).toBe("pending")
        const reset = yield* runner.reset(KEY)
        expect(reset.generation).toBe(first.generation + 1)
        expect(reset.sessionId).not.toBe(first.sessionId)
        expect(reset.compactionCount).toBe(0)
        yield* model.setLatency({ summaryMs: 0 })
        const turn = yield* runner.turn(KEY, "new generation")
        expect(turn.compaction.state).toBe("none")
        expect(turn.sessionId).toBe(reset.sessionId)
        yield* advance(90_000)
        const status = yield* runner.status(KEY)
        expect(status.sessionId).toBe(reset.sessionId)
        expect(status.compactionCount).toBe(0)
        expect(status.lastCompaction).toBeUndefined()
        expect((yield* entryOf(KEY)).deliveryContext).toEqual({ channel: "telegram", to: "user:1" })
      })
    ),

  "S9 the process dies after the compaction entry, before the flush: a restart counts it once, fresh": (
    options
  ) =>
    Effect.gen(function* () {
      const fs = yield* MemoryFileSystem.make
      const shared = Layer.succeed(FileSystem.FileSystem, fs)
      const crashed = yield* Scope.make()
      const first = yield* Layer.buildWithScope(
        makeLayer({
          ...options,
          fileSystem: shared,
          config: { ...options.config, flushIntervalMs: 3_600_000 }
        }),
        crashed
      )
      const sessionId = yield* Effect.gen(function* () {
        const runner = yield* Runner
        const store = yield* SessionStore
        yield* prime(KEY, 3, 900)
        yield* store.flush
        const r = yield* runner.compact(KEY, {})
        expect(r.state).toBe("completed")
        return r.status.sessionId
      }).pipe(Effect.provide(first))
      // The first process is gone: its scope is never closed, its store never flushed again.
      yield* onRuntime(
        { ...options, fileSystem: shared },
        Effect.gen(function* () {
          const runner = yield* Runner
          const reconciler = yield* Reconciler
          yield* reconciler.recover()
          const status = yield* runner.status(KEY)
          yield* reconciler.recover()
          const again = yield* runner.status(KEY)
          expect(status.sessionId).toBe(sessionId)
          expect(again.compactionCount).toBe(1)
          expect(again.tokens.fresh).toBe(true)
          expect(again.tokens.context).toBe(again.lastCompaction?.tokensAfter)
        })
      )
    }),

  "S13 two processes on one directory complete compactions at once: sessions.json holds the join": (
    options
  ) =>
    Effect.gen(function* () {
      const fs = yield* MemoryFileSystem.make
      const shared = Layer.succeed(FileSystem.FileSystem, fs)
      const work = (key: string) =>
        Effect.gen(function* () {
          const runner = yield* Runner
          yield* prime(key, 2, 600)
          return yield* runner.compact(key, {})
        })
      const a = yield* Layer.build(makeLayer({ ...options, fileSystem: shared }))
      const b = yield* Layer.build(makeLayer({ ...options, fileSystem: shared }))
      const [ra, rb] = yield* Effect.all(
        [work("a:1").pipe(Effect.provide(a)), work("b:1").pipe(Effect.provide(b))],
        {
          concurrency: 2
        }
      )
      expect([ra.state, rb.state]).toEqual(["completed", "completed"])
      yield* advance(1_000)
      const file = JSON.parse(yield* fs.readFileString(`${SESSIONS_DIR}/sessions.json`)) as Record<
        string,
        SessionEntry
      >
      expect(file["a:1"]?.compactionCount).toBe(1)
      expect(file["b:1"]?.compactionCount).toBe(1)
    }),

  "S14 a 0-byte sessions.json is moved aside, reported, and rebuilt from the transcripts": (options) =>
    onRuntime(
      { ...options, files: { ...fixtureFiles(), [`${SESSIONS_DIR}/sessions.json`]: "" } },
      Effect.gen(function* () {
        const store = yield* SessionStore
        const reconciler = yield* Reconciler
        const fs = yield* FileSystem.FileSystem
        const corrupt = yield* store.corrupt
        expect(Option.isSome(corrupt)).toBe(true)
        const aside = (yield* fs.readDirectory(SESSIONS_DIR)).filter((f) =>
          f.startsWith("sessions.json.corrupt-")
        )
        expect(aside).toHaveLength(1)
        expect(yield* fs.readFileString(`${SESSIONS_DIR}/${aside[0]}`)).toBe("")
        yield* reconciler.recover()
        const runner = yield* Runner
        const sessions = yield* runner.sessions
        expect(sessions.map((s) => [s.sessionKey, s.compactionCount])).toEqual([
          ["recovered:6f1c2a7e-0b1d-4c3e-9a51-2f7d8e9c0a11", 1],
          ["recovered:9b8e7d6c-5a4b-4c3d-8e2f-1a0b9c8d7e6f", 4]
        ])
      })
    ),

  "S15 a failed or cancelled compaction is not counted, writes nothing, and says why": (options) =>
    onRuntime(
      options,
      Effect.gen(function* () {
        const runner = yield* Runner
        const model = yield* LocalModelControl
        const transcript = yield* Transcript
        const seen = yield* collectEvents()
        yield* prime(KEY, 2, 600)
        const sessionId = (yield* runner.status(KEY)).sessionId as SessionId
        const before = yield* transcript.fold(sessionId)
        yield* model.failNextSummary("error", 1)
        const failed = yield* runner.compact(KEY, {})
        expect(failed.state).toBe("failed")
        yield* model.setLatency({ summaryMs: 30_000 })
        const pending = yield* runner.compact(KEY, { waitMs: 0 })
        expect(pending.state).toBe("pending")
        const cancelled = yield* runner.cancelCompaction(KEY)
        expect(cancelled.compaction.state).toBe("idle")
        yield* advance(30_000)
        const status = yield* runner.status(KEY)
        expect(status.compactionCount).toBe(0)
        const after = yield* transcript.fold(sessionId)
        expect(after.lastSeq).toBe(before.lastSeq)
        expect(after.compactionIndex).toBe(0)
        const reasons = (yield* seen).flatMap((e) => (e._tag === "CompactionFailed" ? [e.reason] : []))
        expect(reasons).toEqual(["error", "cancelled"])
      })
    ),

  "S16 a subscriber sees one CompactionCompleted per compaction, after status agrees; replays publish nothing":
    (options) =>
      onRuntime(
        options,
        Effect.gen(function* () {
          const runner = yield* Runner
          const model = yield* LocalModelControl
          const reconciler = yield* Reconciler
          const events = yield* LifecycleEvents
          const transcript = yield* Transcript
          const agreed = yield* Ref.make<Array<string>>([])
          const stream = yield* events.subscribe({ sessionKey: KEY })
          // On each completion, /status and the transcript must already agree.
          yield* Stream.runForEach(stream, (e) =>
            e._tag !== "CompactionCompleted"
              ? Effect.void
              : Effect.gen(function* () {
                  const status = yield* runner.status(KEY)
                  const fold = yield* transcript.fold(e.sessionId as SessionId)
                  if (status.compactionCount >= e.ordinal && fold.compactionIndex >= 1) {
                    yield* Ref.update(agreed, (xs) => [...xs, e.compactionId])
                  }
                }).pipe(Effect.orDie)
          ).pipe(Effect.forkScoped)
          const seen = yield* collectEvents()
          for (let round = 0; round < 2; round++) {
            const result = yield* lateCompaction(KEY, round === 0 ? 2 : 1)
            expect(result.outcome).toBe("timed_out")
            yield* advance(30_000)
            yield* model.setLatency({ summaryMs: 0 })
          }
          const completed = compactionsIn(yield* seen)
          expect(completed).toHaveLength(2)
          expect(new Set(completed.map((e) => e.compactionId)).size).toBe(2)
          expect(yield* Ref.get(agreed)).toEqual(completed.map((e) => e.compactionId))
          for (const e of completed) yield* reconciler.apply(e)
          yield* reconciler.recover()
          yield* settle
          expect(compactionsIn(yield* seen)).toHaveLength(2)
          expect((yield* runner.status(KEY)).compactionCount).toBe(2)
        })
      ),

  "S17 the store is ahead of a missing transcript (2): the next compaction makes it 3": (options) =>
    onRuntime(
      { ...options, files: fixtureFiles() },
      Effect.gen(function* () {
        const runner = yield* Runner
        const key = "agent:main:discord:channel:99"
        expect((yield* runner.status(key)).compactionCount).toBe(2)
        yield* prime(key, 2, 600)
        const r = yield* runner.compact(key, {})
        expect(r.state).toBe("completed")
        expect(r.status.compactionCount).toBe(3)
        expect(r.status.lastCompaction?.ordinal).toBe(3)
      })
    ),

  "S18 another tool's /new rewrites the sessionId: taken as a reset; the late completion changes nothing": (
    options
  ) =>
    onRuntime(
      options,
      Effect.gen(function* () {
        const runner = yield* Runner
        const model = yield* LocalModelControl
        const store = yield* SessionStore
        const fs = yield* FileSystem.FileSystem
        yield* prime(KEY, 2, 600)
        const before = yield* runner.status(KEY)
        yield* model.setLatency({ summaryMs: 90_000 })
        yield* runner.compact(KEY, { waitMs: 0 })
        yield* settle
        expect((yield* runner.status(KEY)).compaction.state).toBe("running")
        yield* store.flush
        // OpenClaw's /new: a new sessionId, the rest of the entry as it was.
        const file = `${SESSIONS_DIR}/sessions.json`
        const json = JSON.parse(yield* fs.readFileString(file)) as Record<string, Record<string, unknown>>
        const fresh = "0d15ea5e-0000-4000-8000-000000000018"
        json[KEY] = { ...json[KEY], sessionId: fresh }
        yield* fs.writeFileString(file, JSON.stringify(json, null, 2))
        // Any later write makes this process read the file under the lock.
        yield* model.setLatency({ summaryMs: 0 })
        yield* runner.turn("agent:other", "hello")
        yield* advance(100)
        const reset = yield* runner.status(KEY)
        expect(reset.sessionId).toBe(fresh)
        expect(reset.generation).toBe(before.generation + 1)
        yield* advance(90_000)
        const after = yield* runner.status(KEY)
        expect(after.sessionId).toBe(fresh)
        expect(after.compactionCount).toBe(reset.compactionCount)
        expect(after.lastCompaction).toBeUndefined()
      })
    ),

  "S19 the same turn twice with one idempotency key runs once": (options) =>
    onRuntime(
      options,
      Effect.gen(function* () {
        const runner = yield* Runner
        const model = yield* LocalModelControl
        const transcript = yield* Transcript
        yield* prime(KEY, 1, 100)
        yield* model.setLatency({ replyMs: 5_000 })
        const first = yield* Effect.fork(runner.turn(KEY, "send once", { idempotencyKey: "msg-1" }))
        yield* advance(1_000)
        const second = yield* Effect.fork(runner.turn(KEY, "send once", { idempotencyKey: "msg-1" }))
        yield* advance(4_000)
        const [a, b] = [yield* done(first), yield* done(second)]
        expect(b).toEqual(a)
        const read = yield* transcript.read(a.sessionId as SessionId)
        const said = read.entries.filter(
          (e) =>
            e.entry.type === "message" &&
            (e.entry.message as { role: string; content: unknown }).content === "send once"
        )
        expect(said).toHaveLength(1)
        const replies = read.entries.filter(
          (e) => e.entry.type === "message" && (e.entry.message as { role: string }).role === "assistant"
        )
        expect(replies).toHaveLength(2)
      })
    ),

  "S12 shutdown while a compaction runs: interrupted within the drain bound, nothing written": (options) =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(makeLayer(options), scope)
      const setup = Effect.gen(function* () {
        const runner = yield* Runner
        const model = yield* LocalModelControl
        const seen = yield* collectEvents()
        yield* prime(KEY, 3, 900)
        yield* model.setLatency({ summaryMs: 90_000 })
        const r = yield* runner.compact(KEY, { waitMs: 0 })
        expect(r.state).toBe("pending")
        const transcript = yield* Transcript
        const before = yield* transcript.fold(r.status.sessionId as SessionId)
        return { seen, sessionId: r.status.sessionId as SessionId, before }
      }).pipe(Effect.provide(context))
      const { seen, sessionId, before } = yield* setup
      const start = yield* Clock.currentTimeMillis
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* advance(10_000)
      yield* Fiber.join(closing)
      expect((yield* Clock.currentTimeMillis) - start).toBe(10_000)
      const failed = (yield* seen).filter((e) => e._tag === "CompactionFailed")
      expect(failed).toHaveLength(1)
      expect(failed[0]).toMatchObject({ reason: "shutdown" })
      // Nothing written: the file is as it was, every line whole.
      const fs = Context.get(context, FileSystem.FileSystem)
      const text = yield* fs.readFileString(`${SESSIONS_DIR}/${sessionId}.jsonl`)
      expect(text.endsWith("\n")).toBe(true)
      const lines = text.trimEnd().split("\n")
      expect(lines.length - 2).toBe(before.lastSeq)
      for (const line of lines) JSON.parse(line)
      expect(text).not.toContain('"type":"compaction"')
    })
}

/** The fixture directory as seed files of the in-memory file system. */
export const fixtureFiles = (): Record<string, string> => {
  const dir = path.resolve(import.meta.dirname, "../../../test/fixtures/openclaw-sessions")
  const files: Record<string, string> = {}
  for (const name of nodeFs.readdirSync(dir)) {
    files[`${SESSIONS_DIR}/${name}`] = nodeFs.readFileSync(path.join(dir, name), "utf8")
  }
  return files
}
