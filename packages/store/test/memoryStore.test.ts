import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Option, TestClock } from "effect"
import { SessionStore } from "../src/index.js"
import { v } from "./helpers.js"

describe("SessionStore.layerMemory", () => {
  it.scoped("merges patches into entries, stamps ownedFor, lists by key", () =>
    Effect.gen(function* () {
      const store = yield* SessionStore
      expect(Option.isNone(yield* store.get("k"))).toBe(true)
      const first = yield* store.merge("k", {
        ...v("s-1"),
        compactionCount: 1,
        compactionBase: 0,
        model: "m"
      })
      expect(first).toMatchObject({ sessionId: "s-1", ownedFor: "s-1", compactionCount: 1, model: "m" })
      yield* store.merge("k", { ...v("s-1"), compactionCount: 0 })
      yield* store.merge("a", { ...v("s-a") })
      expect(Option.getOrThrow(yield* store.get("k")).compactionCount).toBe(1)
      expect((yield* store.list).map(([key]) => key)).toEqual(["a", "k"])
      expect(Option.isNone(yield* store.corrupt)).toBe(true)
    }).pipe(Effect.provide(SessionStore.layerMemory))
  )

  it.scoped("concurrent merges of the same key all land: no update is lost", () =>
    Effect.gen(function* () {
      const store = yield* SessionStore
      yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => i),
        (i) =>
          store.merge("k", {
            ...v("s-1"),
            compactionCount: i,
            lastRun: { runId: `r${i}`, outcome: "completed", at: i, seq: i },
            updatedAt: i
          }),
        { concurrency: "unbounded", discard: true }
      )
      expect(Option.getOrThrow(yield* store.get("k"))).toMatchObject({
        compactionCount: 199,
        lastRun: { runId: "r199", seq: 199 },
        updatedAt: 199
      })
      expect((yield* store.stats).merges).toBe(200)
    }).pipe(Effect.provide(SessionStore.layerMemory))
  )

  it.scoped("has no flusher and sets no timer", () =>
    Effect.gen(function* () {
      const store = yield* SessionStore
      yield* store.merge("k", v("s-1"))
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
      expect(Chunk.toArray(yield* TestClock.sleeps())).toEqual([])
      yield* store.flush
      expect(yield* store.stats).toMatchObject({ merges: 1, durableMerges: 1, dirtyKeys: 0, writes: 0 })
    }).pipe(Effect.provide(SessionStore.layerMemory))
  )
})
