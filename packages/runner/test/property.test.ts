/**
 * Random histories of turns, timeouts, compactions (late, duplicated, reordered, failed,
 * cancelled), resets and restarts: afterwards every session's compactionCount,
 * lastCompaction and token snapshot equal what recovery computes from its transcript and
 * its stored compactionBase.
 */
import { FileSystem } from "@effect/platform"
import { expect, it } from "@effect/vitest"
import { type Context, Effect, Exit, Fiber, FastCheck as fc, Layer, Scope } from "effect"
import type { LifecycleEvent, SessionId } from "@converge/domain"
import { SessionStore } from "@converge/store"
import { LocalModelControl, MemoryFileSystem } from "@converge/testkit"
import { Transcript } from "@converge/transcript"
import { Reconciler } from "../src/Reconciler.js"
import { Runner } from "../src/Runner.js"
import { advance, collectEvents, makeLayer, settle, words } from "./harness.js"

const Key = fc.constantFrom("a:1", "b:2")

const Op = fc.oneof(
  fc.record({
    _tag: fc.constant("turn" as const),
    key: Key,
    tokens: fc.integer({ min: 50, max: 1400 }),
    timeoutMs: fc.constantFrom(5_000, 60_000)
  }),
  fc.record({
    _tag: fc.constant("compact" as const),
    key: Key,
    summaryMs: fc.constantFrom(0, 20_000, 120_000)
  }),
  fc.record({ _tag: fc.constant("advance" as const), ms: fc.constantFrom(1_000, 30_000, 200_000) }),
  fc.record({ _tag: fc.constant("cancel" as const), key: Key }),
  fc.record({ _tag: fc.constant("failSummary" as const) }),
  fc.record({ _tag: fc.constant("hang" as const), on: fc.boolean() }),
  fc.record({ _tag: fc.constant("reset" as const), key: Key }),
  fc.record({ _tag: fc.constant("replay" as const), index: fc.nat() }),
  fc.record({ _tag: fc.constant("restart" as const) })
)
type Op = typeof Op extends fc.Arbitrary<infer A> ? A : never

type Services = Layer.Layer.Success<ReturnType<typeof makeLayer>>

interface Process {
  readonly scope: Scope.CloseableScope
  readonly context: Context.Context<Services>
  readonly seen: Effect.Effect<ReadonlyArray<LifecycleEvent>>
}

const run = (ops: ReadonlyArray<Op>) =>
  Effect.gen(function* () {
    const fs = yield* MemoryFileSystem.make
    const options = { fileSystem: Layer.succeed(FileSystem.FileSystem, fs) }
    const replayable: Array<LifecycleEvent> = []
    const start = Effect.gen(function* () {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(makeLayer(options), scope)
      const seen = yield* collectEvents().pipe(Effect.provide(context), Scope.extend(scope))
      return { scope, context, seen } satisfies Process
    })
    const stop = (p: Process) =>
      Effect.gen(function* () {
        replayable.push(...(yield* p.seen))
        const closing = yield* Effect.fork(Scope.close(p.scope, Exit.void))
        yield* advance(10_000)
        yield* Fiber.join(closing)
      })
    let p = yield* start
    const inProcess = <A, E>(effect: Effect.Effect<A, E, Services>) => Effect.provide(effect, p.context)

    for (const op of ops) {
      switch (op._tag) {
        case "turn":
          yield* inProcess(
            Effect.flatMap(Runner, (r) => r.turn(op.key, words(op.tokens, "t"), { timeoutMs: op.timeoutMs }))
          ).pipe(Effect.ignore, Effect.fork)
          break
        case "compact":
          yield* inProcess(
            Effect.gen(function* () {
              yield* (yield* LocalModelControl).setLatency({ summaryMs: op.summaryMs })
              yield* (yield* Runner).compact(op.key, { waitMs: 0 })
            })
          ).pipe(Effect.ignore)
          break
        case "advance":
          yield* advance(op.ms)
          break
        case "cancel":
          yield* inProcess(Effect.flatMap(Runner, (r) => r.cancelCompaction(op.key))).pipe(Effect.ignore)
          break
        case "failSummary":
          yield* inProcess(Effect.flatMap(LocalModelControl, (m) => m.failNextSummary("error", 1)))
          break
        case "hang":
          yield* inProcess(Effect.flatMap(LocalModelControl, (m) => m.hangSummaries(op.on)))
          break
        case "reset":
          yield* inProcess(Effect.flatMap(Runner, (r) => r.reset(op.key))).pipe(Effect.ignore)
          break
        case "replay": {
          const events = [...replayable, ...(yield* p.seen)]
          const event = events.length === 0 ? undefined : events[op.index % events.length]
          if (event !== undefined) yield* inProcess(Effect.flatMap(Reconciler, (r) => r.apply(event)))
          break
        }
        case "restart":
          yield* stop(p)
          p = yield* start
          break
      }
      yield* settle
    }
    // Let everything finish: the hard timeout bounds every compaction.
    yield* inProcess(Effect.flatMap(LocalModelControl, (m) => m.hangSummaries(false)))
    for (let i = 0; i < 5; i++) yield* advance(300_000)

    yield* inProcess(
      Effect.gen(function* () {
        const store = yield* SessionStore
        const transcript = yield* Transcript
        for (const [key, entry] of yield* store.list) {
          const base = entry.compactionBase ?? 0
          const exists = yield* transcript.exists(entry.sessionId as SessionId)
          if (!exists) {
            expect(entry.compactionCount ?? 0, key).toBe(base)
            continue
          }
          const fold = yield* transcript.fold(entry.sessionId as SessionId)
          expect(entry.compactionCount, key).toBe(base + fold.compactionIndex)
          if (fold.lastCompaction !== undefined) {
            expect(entry.lastCompaction?.compactionId, key).toBe(fold.lastCompaction.id)
            expect(entry.lastCompaction?.ordinal, key).toBe(base + fold.lastCompaction.index)
            expect(entry.lastCompaction?.seq, key).toBe(fold.lastCompaction.seq)
          } else expect(entry.lastCompaction, key).toBeUndefined()
          if (fold.snapshot !== undefined) {
            expect(entry.tokensAsOfSeq, key).toBe(fold.snapshot.asOfSeq)
            expect(entry.totalTokens, key).toBe(fold.snapshot.context)
          } else expect(entry.tokensAsOfSeq ?? -1, key).toBe(-1)
        }
      })
    )
    yield* stop(p)
  })

it.scoped.prop(
  "random histories converge to what recovery computes",
  [fc.array(Op, { minLength: 5, maxLength: 30 })],
  ([ops]) => run(ops),
  {
    timeout: 120_000,
    fastCheck: { numRuns: 40 }
  }
)
