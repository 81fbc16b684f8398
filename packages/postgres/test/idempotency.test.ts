/**
 * The idempotency record's rules on a real database, two gateways (two pools) on one database,
 * under `TestClock`: a held key is taken over only once its hold lapses, an old holder cannot
 * answer a claim taken over, a released key is run again, and a key is forgotten 24 h after
 * its claim.
 */
import type { TurnResult } from "@converge/domain"
import { IDEMPOTENCY_TTL_MS } from "@converge/runner"
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Fiber, Layer, Option, TestClock } from "effect"
import * as Database from "../src/Database.js"
import { makeIdempotencyRecord } from "../src/PgIdempotency.js"
import { freshDatabase } from "./db.js"

const result = (runId: string): TurnResult => ({
  runId,
  sessionKey: "agent:main:k",
  sessionId: "s-1",
  outcome: "completed",
  reply: `reply of ${runId}`,
  compaction: { state: "none" },
  status: {
    sessionKey: "agent:main:k",
    sessionId: "s-1",
    generation: 1,
    compactionCount: 0,
    compaction: { state: "idle" },
    tokens: { context: 10, window: 100, input: 5, output: 5, fresh: true, asOfSeq: 1 },
    updatedAt: 1
  }
})

/** Two records on one fresh database, as two gateways see it. */
const twoGateways = Effect.gen(function* () {
  const { url } = yield* freshDatabase("converge_idem")
  const gateway = () =>
    Layer.build(Database.layer({ url, maxConnections: 2 })).pipe(
      Effect.flatMap((context) => Effect.provide(makeIdempotencyRecord({ url, pollMs: 10 }), context))
    )
  const a = yield* gateway()
  const b = yield* gateway()
  // A round trip to the server: lets the other gateway's statements in flight come back.
  const context = yield* Layer.build(Database.layer({ url, maxConnections: 1 }))
  const roundTrip = Effect.provide(
    Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`),
    context
  ).pipe(Effect.orDie)
  return { a, b, roundTrip }
})

describe("the idempotency record on PostgreSQL", () => {
  it.scoped("a key held by a live gateway is waited for, and answered with its result", () =>
    Effect.gen(function* () {
      const { a, b, roundTrip } = yield* twoGateways
      const claim = yield* a.claim("agent:main:k", "key-1", 30_000)
      expect(claim._tag).toBe("Claimed")
      const waiting = yield* Effect.fork(b.claim("agent:main:k", "key-1", 30_000))
      // b looks again every 10 ms (virtual): within the hold it never takes the key.
      for (let i = 0; i < 20; i++) yield* Effect.zipRight(roundTrip, TestClock.adjust("10 millis"))
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
      if (claim._tag === "Claimed") yield* a.answer("agent:main:k", "key-1", claim.token, result("run-a"))
      while (Option.isNone(yield* Fiber.poll(waiting)))
        yield* Effect.zipRight(roundTrip, TestClock.adjust("10 millis"))
      const answered = yield* Fiber.join(waiting)
      expect(answered).toEqual({ _tag: "Answered", result: result("run-a") })
    })
  )

  it.scoped(
    "a dead holder's key is taken over (Abandoned) after its hold, and the old holder cannot answer it",
    () =>
      Effect.gen(function* () {
        const { a, b } = yield* twoGateways
        const first = yield* a.claim("agent:main:k", "key-2", 1_000)
        yield* TestClock.adjust("1001 millis")
        const second = yield* b.claim("agent:main:k", "key-2", 1_000)
        // Taken from a holder that never answered: the turn may have been partly done.
        expect(second._tag).toBe("Abandoned")
        if (first._tag !== "Claimed" || second._tag !== "Abandoned") return
        expect(second.token).not.toBe(first.token)
        // The old holder comes back late: its answer and its release change nothing.
        yield* a.answer("agent:main:k", "key-2", first.token, result("run-old"))
        yield* a.release("agent:main:k", "key-2", first.token)
        yield* b.answer("agent:main:k", "key-2", second.token, result("run-new"))
        expect(yield* a.claim("agent:main:k", "key-2", 1_000)).toEqual({
          _tag: "Answered",
          result: result("run-new")
        })
      })
  )

  it.scoped("a released key runs again; a key is forgotten 24 h after its claim", () =>
    Effect.gen(function* () {
      const { a, b } = yield* twoGateways
      const refused = yield* a.claim("agent:main:k", "key-3", 30_000)
      if (refused._tag !== "Claimed") return expect.fail("the first claim is granted")
      yield* a.release("agent:main:k", "key-3", refused.token)
      const again = yield* b.claim("agent:main:k", "key-3", 30_000)
      expect(again._tag).toBe("Claimed")
      if (again._tag !== "Claimed") return
      yield* b.answer("agent:main:k", "key-3", again.token, result("run-3"))
      yield* TestClock.adjust(IDEMPOTENCY_TTL_MS - 1)
      expect((yield* a.claim("agent:main:k", "key-3", 30_000))._tag).toBe("Answered")
      yield* TestClock.adjust(1)
      // Forgotten, not abandoned: a fresh claim.
      expect((yield* a.claim("agent:main:k", "key-3", 30_000))._tag).toBe("Claimed")
    })
  )
})
