/**
 * The lease under virtual time, on the in-memory file system (as the runner's scenario
 * tests run it): refreshed while active, released once idle, and no timer left behind.
 */
import { MemoryFileSystem } from "@converge/testkit"
import { describe, expect, it } from "@effect/vitest"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Chunk, Context, Effect, Fiber, Layer, TestClock } from "effect"
import { Transcript } from "../src/index.js"
import { user } from "./helpers.js"

const build = Effect.gen(function* () {
  const memory = yield* MemoryFileSystem.make
  const layer = Transcript.layer({ sessionsDir: "/s", leaseMs: 9_000, idleMs: 30_000 }).pipe(
    Layer.provide(Layer.merge(Layer.succeed(FileSystem.FileSystem, memory), Path.layer))
  )
  const t = Context.get(yield* Layer.build(layer), Transcript)
  const lock = memory.readFileString("/s/a.jsonl.lock").pipe(
    Effect.map((text) => JSON.parse(text) as { refreshedAt: number }),
    Effect.option
  )
  return { t, lock, memory }
})

describe("lease under TestClock", () => {
  it.scoped(
    "refreshed every leaseMs / 3 while active (the first time sooner, by session), released when idle, then no timer is left",
    () =>
      Effect.gen(function* () {
        const { t, lock } = yield* build
        yield* t.append("a", [user("x")])
        expect((yield* lock)._tag).toBe("Some")
        // The first refresh: half to all of the period in, by the session's id (1,830 ms for "a").
        const [first] = Chunk.toReadonlyArray(yield* TestClock.sleeps())
        expect(first).toBeGreaterThanOrEqual(1_500)
        expect(first).toBeLessThanOrEqual(3_000)
        yield* TestClock.adjust(first!)
        expect(yield* lock).toMatchObject({ _tag: "Some", value: { refreshedAt: first } })
        // Then every period.
        expect(Chunk.toReadonlyArray(yield* TestClock.sleeps())).toEqual([first! + 3_000])
        yield* TestClock.adjust("3 seconds")
        expect(yield* lock).toMatchObject({ _tag: "Some", value: { refreshedAt: first! + 3_000 } })
        // Activity postpones the release.
        yield* TestClock.adjust("20 seconds")
        yield* t.append("a", [user("y")])
        yield* TestClock.adjust("29 seconds")
        expect((yield* lock)._tag).toBe("Some")
        yield* TestClock.adjust("2 seconds")
        expect((yield* lock)._tag).toBe("None")
        expect(Chunk.toReadonlyArray(yield* TestClock.sleeps())).toEqual([])
        // Taken again on demand.
        const [next] = yield* t.append("a", [user("z")])
        expect(next!.seq).toBe(2)
      })
  )

  it.scoped("hold keeps the lease past idleMs; releasing the hold lets it go", () =>
    Effect.gen(function* () {
      const { t, lock } = yield* build
      const held = yield* Effect.fork(
        Effect.scoped(Effect.zipRight(t.hold("a"), Effect.sleep("100 seconds")))
      )
      yield* TestClock.adjust("90 seconds")
      expect((yield* lock)._tag).toBe("Some")
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(held)
      yield* TestClock.adjust("30 seconds")
      expect((yield* lock)._tag).toBe("None")
      expect(Chunk.toReadonlyArray(yield* TestClock.sleeps())).toEqual([])
    })
  )

  it.scoped("closing the runtime releases every lease and keeps the resume state", () =>
    Effect.gen(function* () {
      const memory = yield* MemoryFileSystem.make
      const layer = Transcript.layer({ sessionsDir: "/s", resumeMinBytes: 1 }).pipe(
        Layer.provide(Layer.merge(Layer.succeed(FileSystem.FileSystem, memory), Path.layer))
      )
      yield* Effect.scoped(
        Effect.gen(function* () {
          const t = Context.get(yield* Layer.build(layer), Transcript)
          yield* t.append("a", [user("x")])
          yield* t.append("b", [user("y")])
          expect(yield* memory.exists("/s/a.jsonl.lock")).toBe(true)
        })
      )
      expect([...(yield* memory.readDirectory("/s"))].sort()).toEqual([
        "a.jsonl",
        "b.jsonl",
        "transcripts.resume.json"
      ])
      const index = JSON.parse(yield* memory.readFileString("/s/transcripts.resume.json")) as {
        sessions: object
      }
      expect(Object.keys(index.sessions).sort()).toEqual(["a", "b"])
      expect(yield* memory.exists("/s/a.jsonl.lock")).toBe(false)
      expect(yield* memory.exists("/s/b.jsonl.lock")).toBe(false)
    })
  )
})

describe("resume index under TestClock", () => {
  it.scoped("is written resumeFlushMs after it changes, once, and then no timer is left", () =>
    Effect.gen(function* () {
      const memory = yield* MemoryFileSystem.make
      const layer = Transcript.layer({ sessionsDir: "/s", resumeMinBytes: 1, resumeFlushMs: 5_000 }).pipe(
        Layer.provide(Layer.merge(Layer.succeed(FileSystem.FileSystem, memory), Path.layer))
      )
      yield* memory.makeDirectory("/s")
      for (const id of ["a", "b"]) {
        yield* memory.writeFileString(
          `/s/${id}.jsonl`,
          `${JSON.stringify({ type: "session", version: 3, id, timestamp: "2026-01-01T00:00:00.000Z" })}\n`
        )
      }
      const t = Context.get(yield* Layer.build(layer), Transcript)
      yield* t.fold("a")
      yield* t.fold("b")
      yield* Effect.yieldNow() // the flusher is forked: let it start its sleep
      expect(Chunk.toReadonlyArray(yield* TestClock.sleeps())).toEqual([5_000])
      expect(yield* memory.exists("/s/transcripts.resume.json")).toBe(false)
      yield* TestClock.adjust("5 seconds")
      const index = JSON.parse(yield* memory.readFileString("/s/transcripts.resume.json")) as {
        sessions: object
      }
      expect(Object.keys(index.sessions).sort()).toEqual(["a", "b"])
      expect(Chunk.toReadonlyArray(yield* TestClock.sleeps())).toEqual([])
    })
  )
})
