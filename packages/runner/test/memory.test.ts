/**
 * Bounded memory (issue 15): what the per-session caches drop is rebuilt from disk with no
 * change in behaviour, and after many turns over more sessions than the bounds, what is
 * retained stays within them. Under TestClock on the in-memory file system.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import type { TurnResult } from "@converge/domain"
import { Transcript } from "@converge/transcript"
import { CompactionSupervisor } from "../src/CompactionSupervisor.js"
import { LifecycleEvents } from "../src/LifecycleEvents.js"
import { Lanes } from "../src/Lanes.js"
import { Runner } from "../src/Runner.js"
import { advance, makeLayer, settle, words } from "./harness.js"
import { scenarios } from "./scenarios.js"

/** Every parsed transcript is evicted as soon as it is cached: each read goes to the file. */
const evictAlways = { config: { cacheSessions: 1, cacheMb: 0 } } as const

const scenario = (id: string) => {
  const found = Object.entries(scenarios).find(([name]) => name.startsWith(`${id} `))
  if (found === undefined) throw new Error(`no scenario ${id}`)
  return found
}

describe("eviction is invisible", () => {
  for (const id of ["S1", "S9"]) {
    const [name, run] = scenario(id)
    it.scoped(`${name} — with every cached transcript evicted`, () => run(evictAlways))
  }

  /** What a session answers, without the random ids that differ between two runs. */
  const comparable = (r: TurnResult) => ({
    outcome: r.outcome,
    reply: r.reply,
    compaction: r.compaction.state,
    compactionCount: r.status.compactionCount,
    tokens: r.status.tokens,
    generation: r.status.generation,
    updatedAt: r.status.updatedAt
  })

  /** Turns and a compaction on A, with B's turns in between (which evict A from a cache of one). */
  const story = Effect.gen(function* () {
    const runner = yield* Runner
    const transcript = yield* Transcript
    const answers: Array<unknown> = []
    for (let i = 0; i < 6; i++) {
      answers.push(comparable(yield* runner.turn("a", words(500, `a${i}`))))
      yield* runner.turn("b", words(300, `b${i}`))
      if (i === 3) {
        const c = yield* runner.compact("a", {})
        answers.push({ state: c.state, tokensBefore: c.tokensBefore, tokensAfter: c.tokensAfter })
      }
    }
    const status = yield* runner.status("a")
    answers.push({
      ...status,
      sessionId: "",
      lastCompaction: { ...status.lastCompaction, compactionId: "" },
      lastRun: { ...status.lastRun, runId: "" }
    })
    return { answers, stats: yield* transcript.cacheStats }
  })

  it.scoped("a session evicted from a cache of one answers turns, compactions and status as before", () =>
    Effect.gen(function* () {
      const cached = yield* story.pipe(Effect.provide(makeLayer({ config: { cacheSessions: 2 } })))
      const evicted = yield* story.pipe(Effect.provide(makeLayer({ config: { cacheSessions: 1 } })))
      expect(cached.stats.evictions).toBe(0)
      expect(evicted.stats.evictions).toBeGreaterThan(5)
      expect(evicted.stats.sessions).toBe(1)
      expect(evicted.answers).toEqual(cached.answers)
    })
  )
})

describe("retained objects stay within the bounds", () => {
  const SESSIONS = 12
  const ROUNDS = 8
  const bounds = { cacheSessions: 3, cacheMb: 1, idempotencyKeys: 20 }

  it.scoped(`${SESSIONS * ROUNDS} turns over ${SESSIONS} sessions with subscribers coming and going`, () =>
    Effect.gen(function* () {
      const runner = yield* Runner
      const transcript = yield* Transcript
      const supervisor = yield* CompactionSupervisor
      const lanes = yield* Lanes
      const events = yield* LifecycleEvents
      let compacted = 0
      let heard = 0
      for (let round = 0; round < ROUNDS; round++) {
        // An SSE-like subscriber for the round, gone at its end.
        yield* Effect.scoped(
          Effect.gen(function* () {
            const stream = yield* events.subscribe()
            yield* Stream.runForEach(stream, () => Effect.sync(() => heard++)).pipe(Effect.forkScoped)
            const results = yield* Effect.forEach(
              Array.from({ length: SESSIONS }, (_, i) => i),
              (i) => runner.turn(`soak:${i}`, words(400, `r${round}`), { idempotencyKey: `k${round}-${i}` }),
              { concurrency: 4 }
            )
            for (const r of results) {
              expect(r.outcome).toBe("completed")
              if (r.compaction.state === "completed") compacted++
            }
            yield* settle
          })
        )
        const stats = yield* transcript.cacheStats
        expect(stats.sessions).toBeLessThanOrEqual(bounds.cacheSessions)
        expect(stats.bytes).toBeLessThanOrEqual(bounds.cacheMb * 1024 * 1024)
        expect(yield* runner.idempotencyKeys).toBeLessThanOrEqual(bounds.idempotencyKeys)
        expect(yield* runner.running).toBe(0)
        expect(yield* supervisor.size).toBe(0)
      }
      expect(compacted).toBeGreaterThan(0)
      expect(heard).toBeGreaterThan(SESSIONS * ROUNDS)
      expect(yield* runner.idempotencyKeys).toBe(bounds.idempotencyKeys)
      expect((yield* transcript.cacheStats).evictions).toBeGreaterThan(0)
      for (let i = 0; i < SESSIONS; i++)
        expect(yield* lanes.state(`soak:${i}`)).toEqual({ running: false, waiting: 0 })
      // Idle: leases, and the parsed copies they keep, are released.
      yield* advance(30_000)
      const idle = yield* transcript.cacheStats
      expect(idle.leases).toBe(0)
      expect(idle.sessions).toBe(0)
      // Keys expire after 24 h.
      yield* advance(24 * 60 * 60 * 1000)
      yield* runner.turn("soak:0", "after a day", { idempotencyKey: "fresh" })
      expect(yield* runner.idempotencyKeys).toBe(1)
    }).pipe(Effect.provide(makeLayer({ config: bounds })))
  )
})
