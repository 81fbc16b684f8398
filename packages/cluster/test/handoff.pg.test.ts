/**
 * A session's shard moves between two runners on one database. Each runner is a whole runtime
 * of its own (store, transcript, runner, model) on the same PostgreSQL database, as two
 * gateway processes are; its `Session` entity is hosted by the cluster's in-memory test
 * client, and closing a host's scope is its shard moving away (the entity stops, as the
 * cluster stops it before it releases the shard). Under `TestClock`.
 *
 * What must hold: when a host's entity has stopped, nothing of that runner writes the session
 * any more — its compaction committed within the hand-off bound, or failed (`shutdown`); and a
 * runner the session comes back to answers from the transcript and the store, not from what it
 * saw before the session left.
 */
import { Entity, ShardingConfig } from "@effect/cluster"
import { describe, expect, it } from "@effect/vitest"
import { type Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import type { LifecycleEvent, SessionId } from "@converge/domain"
import { Database, layerPgStore, layerPgTranscript } from "@converge/postgres"
import { CompactionSupervisor } from "@converge/runner"
import { LocalModelControl } from "@converge/testkit"
import { Transcript } from "@converge/transcript"
import { freshDatabase } from "../../postgres/test/db.js"
import { advance, collectEvents, makeLayer, settle, trackIo, words } from "../../runner/test/harness.js"
import { layerSessionEntity } from "../src/ClusterLayer.js"
import { SessionEntity } from "../src/SessionEntity.js"

const KEY = "agent:main:handoff"
const HANDOFF_MS = 1_000

/** One gateway process on the database at `url`: its own pools, caches, runner and model. */
const processOn = (url: string) =>
  makeLayer({
    config: { localSummaryMs: 0 },
    variant: {
      name: "pg",
      realIo: true,
      store: (options) =>
        layerPgStore({ url, flushIntervalMs: options.flushIntervalMs }).pipe(
          Layer.provide(Database.layer({ url, maxConnections: 2 })),
          Layer.orDie
        ),
      transcript: () =>
        layerPgTranscript({ url, leaseMs: 10_000 }).pipe(
          Layer.provide(Database.layer({ url, maxConnections: 2 })),
          Layer.orDie
        )
    }
  })

type Process = Context.Context<Layer.Layer.Success<ReturnType<typeof processOn>>>

/** The session's entity hosted on `process` until `leave` (its shard moving away) runs. */
const host = (process: Process) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const makeClient = yield* Entity.makeTestClient(
      SessionEntity,
      layerSessionEntity({ compactionHandoffMs: HANDOFF_MS }).pipe(
        Layer.provide(Layer.succeedContext(process))
      )
    ).pipe(Scope.extend(scope), Effect.provide(ShardingConfig.layer()))
    const client = yield* makeClient(KEY).pipe(Scope.extend(scope))
    const call = <A, E>(effect: Effect.Effect<A, E>) => trackIo(effect)
    return {
      status: call(client.status()),
      turn: (message: string) =>
        call(client.turn({ message, idempotencyKey: `k-${message.length}-${Math.random()}` })),
      compact: (waitMs: number) => call(client.compact({ waitMs })),
      leave: Scope.close(scope, Exit.void)
    }
  })

/** Compaction entries in the transcript of `sessionId`, read from the database by `process`. */
const entriesOf = (process: Process, sessionId: string) =>
  Effect.map(
    Effect.flatMap(Transcript, (t) => t.fold(sessionId as SessionId)),
    (fold) => fold.compactionIndex
  ).pipe(Effect.provide(process))

const on = <A, E, R>(process: Process, effect: Effect.Effect<A, E, R>) =>
  Effect.provide(effect, process as Context.Context<R>)

describe("a session's shard moving between two runners", () => {
  it.scoped(
    "a compaction that hangs through the hand-off fails (shutdown) there, and nothing of the old runner writes the session after it",
    () =>
      Effect.gen(function* () {
        const { url } = yield* freshDatabase("converge_handoff")
        const a = yield* Layer.build(processOn(url))
        const b = yield* Layer.build(processOn(url))
        const eventsOnB = yield* on(b, collectEvents())

        const onA = yield* host(a)
        for (let i = 0; i < 3; i++) yield* onA.turn(words(400, `m${i}`))
        yield* onA.leave

        const onB = yield* host(b)
        yield* on(
          b,
          Effect.flatMap(LocalModelControl, (m) => m.hangSummaries(true))
        )
        const started = yield* onB.compact(0)
        expect(started.state).toBe("pending")
        const leaving = yield* Effect.fork(onB.leave)
        yield* advance(HANDOFF_MS - 1)
        expect(leaving.unsafePoll(), "the shard is held while the compaction may still commit").toBeNull()
        yield* advance(1)
        yield* Fiber.join(leaving)
        // When the entity has stopped, the old runner runs nothing of the session.
        expect(
          yield* on(
            b,
            Effect.flatMap(CompactionSupervisor, (s) => s.size)
          )
        ).toBe(0)
        const failed = (yield* eventsOnB).filter(
          (e): e is Extract<LifecycleEvent, { _tag: "CompactionFailed" }> => e._tag === "CompactionFailed"
        )
        expect(failed.map((e) => [e.compactionId, e.reason])).toEqual([[started.compactionId, "shutdown"]])
        expect(failed[0]!.message).toContain("moved to another runner")

        // The model answering now changes nothing: that compaction is gone.
        yield* on(
          b,
          Effect.flatMap(LocalModelControl, (m) => m.hangSummaries(false))
        )
        yield* advance(60_000)
        const back = yield* host(a)
        const status = yield* back.status
        expect(status.compaction.state).not.toBe("running")
        expect(yield* entriesOf(a, status.sessionId)).toBe(0)
        expect(status.compactionCount).toBe(0)
        yield* back.leave
      }),
    30_000
  )

  it.scoped(
    "a runner the session comes back to answers what the other runner did there (its compaction, its store row)",
    () =>
      Effect.gen(function* () {
        const { url } = yield* freshDatabase("converge_handoff")
        const a = yield* Layer.build(processOn(url))
        const b = yield* Layer.build(processOn(url))

        const onA = yield* host(a)
        for (let i = 0; i < 3; i++) yield* onA.turn(words(400, `m${i}`))
        expect((yield* onA.status).compactionCount).toBe(0)
        yield* onA.leave

        // On B a compaction commits; B's store row is written later (its flush interval).
        const onB = yield* host(b)
        const compacted = yield* onB.compact(5_000)
        expect(compacted.state).toBe("completed")
        yield* onB.leave

        const back = yield* host(a)
        const status = yield* back.status
        expect(yield* entriesOf(a, status.sessionId)).toBe(1)
        expect(status.compactionCount, "the count A answers, against the entries").toBe(1)
        expect(status.lastCompaction?.compactionId).toBe(compacted.compactionId)
        yield* settle
        yield* back.leave
      }),
    30_000
  )
})
