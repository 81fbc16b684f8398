/**
 * The JSON file backend on the in-memory FileSystem, under TestClock: the write-behind
 * flusher, OpenClaw's layout, merge-on-flush, foreign resets, the lock.
 */
import { spawnSync } from "node:child_process"
import * as os from "node:os"
import type { SessionEntry } from "@converge/domain"
import { MemoryFileSystem } from "@converge/testkit"
import { FileSystem, Path } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Option, Stream, TestClock } from "effect"
import { type FileStoreOptions, SessionStore } from "../src/index.js"
import { awaitSleeper, eventually, fixtureFiles, readSessions, v } from "./helpers.js"

const dir = "/state/sessions"
const file = `${dir}/sessions.json`
const env = Layer.merge(MemoryFileSystem.layer, Path.layer)

const withStore = <A, E, R>(body: Effect.Effect<A, E, R>, options: Partial<FileStoreOptions> = {}) =>
  body.pipe(Effect.provide(SessionStore.layerFile({ sessionsDir: dir, flushIntervalMs: 50, ...options })))

const seedFixture = MemoryFileSystem.seed(
  Object.fromEntries(Object.entries(fixtureFiles()).map(([name, text]) => [`${dir}/${name}`, text]))
)

const exists = (path: string) => Effect.flatMap(FileSystem.FileSystem, (fs) => fs.exists(path))
const stats = Effect.flatMap(SessionStore, (s) => s.stats)

describe("write-behind flusher", () => {
  it.scoped(
    "holds no timer while clean, flushes within flushIntervalMs of the first merge, coalescing all",
    () =>
      withStore(
        Effect.gen(function* () {
          const store = yield* SessionStore
          for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
          expect(Chunk.toArray(yield* TestClock.sleeps())).toEqual([])
          yield* store.merge("a", { ...v("s-a"), compactionCount: 1 })
          yield* awaitSleeper
          expect(Chunk.toArray(yield* TestClock.sleeps())).toEqual([50])
          yield* TestClock.adjust(30)
          yield* store.merge("b", { ...v("s-b"), compactionCount: 2 })
          yield* store.merge("a", { ...v("s-a"), compactionCount: 3 })
          expect(yield* exists(file)).toBe(false)
          yield* TestClock.adjust(20)
          yield* eventually(Effect.map(stats, (s) => s.writes === 1))
          const onDisk = yield* readSessions(dir)
          expect(onDisk.a?.compactionCount).toBe(3)
          expect(onDisk.b?.compactionCount).toBe(2)
          expect(yield* stats).toMatchObject({
            merges: 3,
            durableMerges: 3,
            dirtyKeys: 0,
            flushes: 1,
            writes: 1
          })
          for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
          expect(Chunk.toArray(yield* TestClock.sleeps())).toEqual([])
        })
      ).pipe(Effect.provide(env))
  )

  it.scoped("a merge made during the interval is written by the same flush; a later one by the next", () =>
    withStore(
      Effect.gen(function* () {
        const store = yield* SessionStore
        yield* store.merge("a", { ...v("s-a"), compactionCount: 1 })
        yield* awaitSleeper
        yield* TestClock.adjust(50)
        yield* eventually(Effect.map(stats, (s) => s.writes === 1))
        yield* TestClock.adjust(1_000)
        yield* store.merge("a", { ...v("s-a"), compactionCount: 2 })
        yield* awaitSleeper
        expect(Chunk.toArray(yield* TestClock.sleeps())).toEqual([1_100])
        yield* TestClock.adjust(50)
        yield* eventually(Effect.map(stats, (s) => s.writes === 2))
        expect((yield* readSessions(dir)).a?.compactionCount).toBe(2)
      })
    ).pipe(Effect.provide(env))
  )

  it.scoped("writes nothing when nothing changed", () =>
    withStore(
      Effect.gen(function* () {
        const store = yield* SessionStore
        yield* store.merge("a", { ...v("s-a"), compactionCount: 1 })
        yield* store.flush
        yield* store.merge("a", { ...v("s-a"), compactionCount: 1 })
        yield* store.merge("a", { ...v("s-a"), compactionCount: 0 })
        yield* store.flush
        for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
        expect(Chunk.toArray(yield* TestClock.sleeps())).toEqual([])
        expect(yield* store.stats).toMatchObject({ merges: 1, flushes: 1, writes: 1 })
      })
    ).pipe(Effect.provide(env))
  )

  it.scoped("the layer's finalizer flushes what is dirty", () =>
    Effect.gen(function* () {
      yield* withStore(Effect.flatMap(SessionStore, (s) => s.merge("a", { ...v("s-a"), compactionCount: 7 })))
      expect((yield* readSessions(dir)).a?.compactionCount).toBe(7)
      expect(yield* exists(`${file}.lock`)).toBe(false)
    }).pipe(Effect.provide(env))
  )

  it.scoped("publishes each change on `changes`", () =>
    withStore(
      Effect.gen(function* () {
        const store = yield* SessionStore
        const seen = yield* Stream.runCollect(Stream.take(store.changes, 2)).pipe(Effect.fork)
        // The stream subscribes when its fiber first runs.
        for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
        yield* store.merge("a", { ...v("s-a"), compactionCount: 1 })
        yield* store.merge("a", { ...v("s-a"), compactionCount: 1 })
        yield* store.merge("b", { ...v("s-b"), compactionCount: 1 })
        const changes = Chunk.toArray(yield* Fiber.join(seen))
        expect(changes.map((c) => c.key)).toEqual(["a", "b"])
      })
    ).pipe(Effect.provide(env))
  )
})

describe("OpenClaw layout", () => {
  it.scoped("reads the fixture, keeps every unknown field, writes sessions.json with mode 0600", () =>
    Effect.gen(function* () {
      yield* seedFixture
      const original: Record<string, SessionEntry> = JSON.parse(fixtureFiles()["sessions.json"]!)
      yield* withStore(
        Effect.gen(function* () {
          const store = yield* SessionStore
          expect((yield* store.list).map(([k]) => k)).toEqual(Object.keys(original).sort())
          const main = original["agent:main:main"]!
          yield* store.merge("agent:main:main", {
            ...v(main.sessionId, 0, 0),
            compactionBase: 0,
            compactionCount: 2
          })
          yield* store.flush
        })
      )
      const onDisk = yield* readSessions(dir)
      expect(Object.keys(onDisk)).toEqual(Object.keys(original))
      expect(onDisk["agent:main:telegram:dm:4242"]).toEqual(original["agent:main:telegram:dm:4242"])
      expect(onDisk["agent:main:discord:channel:99"]).toEqual(original["agent:main:discord:channel:99"])
      expect(onDisk["agent:main:main"]).toEqual({
        ...original["agent:main:main"],
        compactionCount: 2,
        generation: 0,
        sessionStartedAt: 0,
        ownedFor: original["agent:main:main"]!.sessionId,
        compactionBase: 0
      })
      const fs = yield* FileSystem.FileSystem
      expect((yield* fs.stat(file)).mode & 0o777).toBe(0o600)
    }).pipe(Effect.provide(env))
  )
})

describe("merge-on-flush", () => {
  it.scoped("joins another writer's owned fields and keeps its unowned changes (three-way)", () =>
    Effect.gen(function* () {
      yield* seedFixture
      const fs = yield* FileSystem.FileSystem
      yield* withStore(
        Effect.gen(function* () {
          const store = yield* SessionStore
          const main = Option.getOrThrow(yield* store.get("agent:main:main"))
          yield* store.merge("agent:main:main", {
            ...v(main.sessionId, 0, 0),
            compactionCount: 2,
            lastChannel: "discord"
          })
          // Another process writes meanwhile: a later compaction, a new model, a new session.
          const theirs: Record<string, SessionEntry> = JSON.parse(yield* fs.readFileString(file))
          theirs["agent:main:main"] = { ...theirs["agent:main:main"]!, compactionCount: 5, model: "gpt-5" }
          theirs["agent:other"] = { sessionId: "o-1", updatedAt: 1, compactionCount: 1 }
          yield* fs.writeFileString(file, JSON.stringify(theirs, null, 2))
          yield* store.flush
          const merged = Option.getOrThrow(yield* store.get("agent:main:main"))
          expect(merged).toMatchObject({ compactionCount: 5, model: "gpt-5", lastChannel: "discord" })
          expect(Option.isSome(yield* store.get("agent:other"))).toBe(true)
        })
      )
      const onDisk = yield* readSessions(dir)
      expect(onDisk["agent:main:main"]).toMatchObject({
        compactionCount: 5,
        model: "gpt-5",
        lastChannel: "discord"
      })
      expect(onDisk["agent:main:main"]?.deliveryContext).toEqual({
        channel: "telegram",
        to: "user:4242",
        accountId: "default"
      })
      expect(onDisk["agent:other"]).toEqual({ sessionId: "o-1", updatedAt: 1, compactionCount: 1 })
    }).pipe(Effect.provide(env))
  )

  it.scoped("a key another writer removed goes, unless this process changed it since", () =>
    Effect.gen(function* () {
      yield* seedFixture
      const fs = yield* FileSystem.FileSystem
      yield* withStore(
        Effect.gen(function* () {
          const store = yield* SessionStore
          const tg = Option.getOrThrow(yield* store.get("agent:main:telegram:dm:4242"))
          yield* store.merge("agent:main:telegram:dm:4242", { ...v(tg.sessionId, 0, 0), compactionCount: 4 })
          const theirs: Record<string, unknown> = JSON.parse(yield* fs.readFileString(file))
          delete theirs["agent:main:discord:channel:99"]
          delete theirs["agent:main:telegram:dm:4242"]
          yield* fs.writeFileString(file, JSON.stringify(theirs, null, 2))
          yield* store.flush
          expect(Option.isNone(yield* store.get("agent:main:discord:channel:99"))).toBe(true)
        })
      )
      const onDisk = yield* readSessions(dir)
      expect(Object.keys(onDisk).sort()).toEqual(["agent:main:main", "agent:main:telegram:dm:4242"])
      expect(onDisk["agent:main:telegram:dm:4242"]?.compactionCount).toBe(4)
    }).pipe(Effect.provide(env))
  )

  it.scoped(
    "OpenClaw's /new (a new sessionId under an old ownedFor) is a reset; the old session's late completion changes nothing (S18)",
    () =>
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        yield* withStore(
          Effect.gen(function* () {
            const store = yield* SessionStore
            yield* store.merge("k", {
              ...v("s-1"),
              compactionCount: 3,
              compactionBase: 0,
              deliveryContext: { to: "u" }
            })
            yield* store.flush
            const theirs: Record<string, SessionEntry> = JSON.parse(yield* fs.readFileString(file))
            theirs.k = { ...theirs.k!, sessionId: "s-2", updatedAt: 9_000 }
            yield* fs.writeFileString(file, JSON.stringify(theirs, null, 2))
            yield* store.merge("other", { ...v("o-1"), compactionCount: 1 })
            yield* store.flush
            const reset = Option.getOrThrow(yield* store.get("k"))
            expect(reset).toMatchObject({
              sessionId: "s-2",
              generation: 2,
              sessionStartedAt: 9_000,
              ownedFor: "s-2",
              compactionBase: 3,
              compactionCount: 3,
              deliveryContext: { to: "u" }
            })
            const late = yield* store.merge("k", { ...v("s-1"), compactionCount: 4 })
            expect(late).toEqual(reset)
          })
        )
        expect((yield* readSessions(dir)).k).toMatchObject({
          sessionId: "s-2",
          generation: 2,
          compactionCount: 3
        })
      }).pipe(Effect.provide(env))
  )

  it.scoped("two stores in one process are two lock owners and lose nothing of each other", () =>
    Effect.gen(function* () {
      const one = yield* Layer.build(SessionStore.layerFile({ sessionsDir: dir, flushIntervalMs: 50 }))
      const two = yield* Layer.build(SessionStore.layerFile({ sessionsDir: dir, flushIntervalMs: 50 }))
      const a = yield* SessionStore.pipe(Effect.provide(one))
      const b = yield* SessionStore.pipe(Effect.provide(two))
      for (let i = 1; i <= 3; i++) {
        yield* a.merge("shared", { ...v("s"), compactionCount: i * 2, fromA: i })
        yield* b.merge("shared", { ...v("s"), compactionCount: i * 2 + 1, fromB: i })
        yield* a.merge(`a${i}`, { ...v(`a${i}`) })
        yield* b.merge(`b${i}`, { ...v(`b${i}`) })
        yield* Effect.all([a.flush, b.flush], { concurrency: 2 })
      }
      yield* a.flush
      const onDisk = yield* readSessions(dir)
      expect(onDisk.shared).toMatchObject({ compactionCount: 7, fromA: 3, fromB: 3 })
      expect(Object.keys(onDisk).sort()).toEqual(["a1", "a2", "a3", "b1", "b2", "b3", "shared"])
    }).pipe(Effect.provide(env))
  )
})

describe("reading the file on flush", () => {
  it.scoped(
    "a same-size rewrite in place, in the same millisecond as this process's write or later, is seen",
    () =>
      withStore(
        Effect.gen(function* () {
          const store = yield* SessionStore
          const fs = yield* FileSystem.FileSystem
          const rewrite = (from: string, to: string) =>
            Effect.flatMap(fs.readFileString(file), (text) =>
              fs.writeFileString(file, text.replace(from, to))
            )
          yield* store.merge("a", { ...v("s-a"), compactionCount: 1, model: "m1" })
          yield* store.flush
          yield* rewrite('"model": "m1"', '"model": "m2"')
          yield* store.merge("b", { ...v("s-b") })
          yield* store.flush
          expect(Option.getOrThrow(yield* store.get("a")).model).toBe("m2")
          yield* TestClock.adjust(10)
          yield* store.merge("c", { ...v("s-c") })
          yield* store.flush
          yield* TestClock.adjust(10)
          yield* rewrite('"model": "m2"', '"model": "m3"')
          yield* store.merge("d", { ...v("s-d") })
          yield* store.flush
          expect(Option.getOrThrow(yield* store.get("a")).model).toBe("m3")
          expect((yield* readSessions(dir)).a?.model).toBe("m3")
        })
      ).pipe(Effect.provide(env))
  )
})

describe("sessions.json.lock", () => {
  const lockOf = (info: Record<string, unknown>) =>
    Effect.flatMap(FileSystem.FileSystem, (fs) =>
      Effect.zipRight(
        fs.makeDirectory(dir, { recursive: true }),
        fs.writeFileString(`${file}.lock`, JSON.stringify(info))
      )
    )

  it.scoped("waits for a live owner, and fails after lockTimeoutMs with an error naming it", () =>
    withStore(
      Effect.gen(function* () {
        const store = yield* SessionStore
        yield* lockOf({ pid: process.pid, host: os.hostname(), owner: "someone-else", createdAt: 0 })
        yield* store.merge("a", v("s-a"))
        const flush = yield* Effect.fork(store.flush)
        yield* awaitSleeper
        yield* TestClock.adjust(999)
        expect(flush.unsafePoll()).toBeNull()
        yield* TestClock.adjust(1)
        const error = yield* Effect.flip(Fiber.join(flush))
        expect(error._tag).toBe("StorageError")
        expect(error.message).toContain(`could not take the lock ${file}.lock within 1000 ms`)
        expect(error.message).toContain(`pid ${process.pid}`)
        expect(yield* exists(file)).toBe(false)
        // Once the owner lets go, the flusher (waiting for the lock meanwhile) goes through.
        yield* Effect.flatMap(FileSystem.FileSystem, (fs) => fs.remove(`${file}.lock`))
        yield* TestClock.adjust(100)
        yield* eventually(Effect.map(store.stats, (s) => s.writes === 1))
        expect(Object.keys(yield* readSessions(dir))).toEqual(["a"])
      }),
      { lockTimeoutMs: 1_000, lockStaleMs: 60_000 }
    ).pipe(Effect.provide(env))
  )

  it.scoped(
    "waits on a lock file its owner has not written yet, and reclaims it once older than lockStaleMs",
    () =>
      withStore(
        Effect.gen(function* () {
          const store = yield* SessionStore
          const fs = yield* FileSystem.FileSystem
          yield* fs.makeDirectory(dir, { recursive: true })
          yield* fs.writeFileString(`${file}.lock`, "")
          yield* store.merge("a", v("s-a"))
          const flush = yield* Effect.fork(store.flush)
          yield* awaitSleeper
          yield* TestClock.adjust(500)
          const error = yield* Effect.flip(Fiber.join(flush))
          expect(error.message).toContain("has not written the lock file since 1970-01-01T00:00:00.000Z")
          yield* TestClock.adjust(700)
          yield* eventually(Effect.map(store.stats, (s) => s.writes === 1))
          expect(Object.keys(yield* readSessions(dir))).toEqual(["a"])
          expect(yield* exists(`${file}.lock`)).toBe(false)
        }),
        { lockTimeoutMs: 500, lockStaleMs: 1_000 }
      ).pipe(Effect.provide(env))
  )

  it.scoped("reclaims a lock past its bound, and a lock whose process is gone", () =>
    withStore(
      Effect.gen(function* () {
        const store = yield* SessionStore
        yield* lockOf({ pid: process.pid, host: os.hostname(), owner: "stuck", createdAt: -60_000 })
        yield* store.merge("a", v("s-a"))
        yield* store.flush
        const dead = spawnSync(process.execPath, ["-e", ""]).pid
        yield* lockOf({ pid: dead, host: os.hostname(), owner: "dead", createdAt: 0 })
        yield* store.merge("b", v("s-b"))
        yield* store.flush
        expect(Object.keys(yield* readSessions(dir)).sort()).toEqual(["a", "b"])
        expect(yield* exists(`${file}.lock`)).toBe(false)
      }),
      { lockTimeoutMs: 1_000, lockStaleMs: 30_000 }
    ).pipe(Effect.provide(env))
  )
})
