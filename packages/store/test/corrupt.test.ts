/**
 * A `sessions.json` that cannot be read (0 bytes, not JSON, wrong shape) is never
 * overwritten: it is moved aside, reported with its path, and the store starts from what
 * it could keep (S14). One entry that is not a session entry does not make the file
 * unreadable: it is kept as it is, reported, and not served (DESIGN §7).
 */
import { MemoryFileSystem } from "@converge/testkit"
import { FileSystem, Path } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger, Option } from "effect"
import { SessionStore } from "../src/index.js"
import { readSessions, v } from "./helpers.js"

const dir = "/state/sessions"
const file = `${dir}/sessions.json`
const env = Layer.merge(MemoryFileSystem.layer, Path.layer)
const store = SessionStore.layerFile({ sessionsDir: dir, flushIntervalMs: 50 })

/** A logger that keeps each message's text, and the messages it kept. */
const captureLogs = () => {
  const logs: Array<string> = []
  const capture = Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ message }) => {
      logs.push(String(Array.isArray(message) ? message[0] : message))
    })
  )
  return { logs, capture }
}

const cases = [
  { name: "0 bytes", text: "", problem: "empty (0 bytes)", kept: [] },
  { name: "white space", text: " \n", problem: "only white space", kept: [] },
  { name: "garbage", text: '{"agent:main:main": {"sessionId": "abc", "updat', problem: "not JSON", kept: [] },
  { name: "an array", text: "[1, 2, 3]", problem: "not a JSON object of session entries", kept: [] }
]

describe("corrupt sessions.json at start", () => {
  for (const c of cases) {
    it.scoped(`${c.name}: moved aside, not overwritten, reported with the path`, () =>
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        yield* MemoryFileSystem.seed({ [file]: c.text })
        const { logs, capture } = captureLogs()
        yield* Effect.gen(function* () {
          const sessions = yield* SessionStore
          const corrupt = Option.getOrThrow(yield* sessions.corrupt)
          expect(corrupt._tag).toBe("StoreCorrupt")
          expect(corrupt.path).toBe(file)
          expect(corrupt.movedTo).toBe(`${file}.corrupt-0`)
          expect(corrupt.message).toContain(c.problem)
          expect(yield* fs.readFileString(`${file}.corrupt-0`)).toBe(c.text)
          expect(yield* fs.exists(file)).toBe(false)
          expect((yield* sessions.list).map(([k]) => k)).toEqual(c.kept)
          yield* sessions.merge("new", { ...v("n-1"), compactionCount: 1 })
          yield* sessions.flush
        }).pipe(Effect.provide(store), Effect.provide(capture))
        expect(logs.some((l) => l.includes(file) && l.includes("moved aside"))).toBe(true)
        expect(yield* fs.readFileString(`${file}.corrupt-0`)).toBe(c.text)
        expect(Object.keys(yield* readSessions(dir)).sort()).toEqual([...c.kept, "new"].sort())
      }).pipe(Effect.provide(env))
    )
  }

  it.scoped("a second corrupt file does not replace the first one moved aside", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      yield* MemoryFileSystem.seed({ [file]: "", [`${file}.corrupt-0`]: "earlier" })
      yield* Effect.flatMap(SessionStore, (s) => s.corrupt).pipe(
        Effect.map((c) => expect(Option.getOrThrow(c).movedTo).toBe(`${file}.corrupt-0-1`)),
        Effect.provide(store)
      )
      expect(yield* fs.readFileString(`${file}.corrupt-0`)).toBe("earlier")
    }).pipe(Effect.provide(env))
  )
})

describe("corrupt sessions.json found by a flush", () => {
  it.scoped("a file truncated by another tool is moved aside, and memory is written in its place", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      yield* Effect.gen(function* () {
        const sessions = yield* SessionStore
        yield* sessions.merge("a", { ...v("s-a"), compactionCount: 2, model: "m" })
        yield* sessions.flush
        yield* fs.writeFileString(file, "")
        yield* sessions.merge("b", { ...v("s-b"), compactionCount: 1 })
        yield* sessions.flush
        const corrupt = Option.getOrThrow(yield* sessions.corrupt)
        expect(corrupt.path).toBe(file)
        expect(yield* fs.readFileString(corrupt.movedTo ?? "")).toBe("")
      }).pipe(Effect.provide(store))
      const onDisk = yield* readSessions(dir)
      expect(onDisk.a).toMatchObject({ compactionCount: 2, model: "m" })
      expect(onDisk.b).toMatchObject({ compactionCount: 1 })
    }).pipe(Effect.provide(env))
  )
})

describe("an entry that is not a session entry", () => {
  // OpenClaw's own fields beside it must survive untouched, and so must the bad value itself.
  const text = `${JSON.stringify(
    {
      good: { sessionId: "g-1", model: "m", deliveryContext: { channel: "telegram" } },
      bad: { sessionId: 42, model: null, extra: ["kept", 1] },
      other: { sessionId: "o-1", compactionCount: 2 }
    },
    null,
    2
  )}\n`

  it.scoped("is kept as it is, in its place, through flushes; reported; the file is not moved aside", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      yield* MemoryFileSystem.seed({ [file]: text })
      const { logs, capture } = captureLogs()
      yield* Effect.gen(function* () {
        const sessions = yield* SessionStore
        expect(Option.isNone(yield* sessions.corrupt)).toBe(true)
        expect((yield* sessions.list).map(([k]) => k)).toEqual(["good", "other"])
        expect(Option.isNone(yield* sessions.get("bad"))).toBe(true)
        const unreadable = yield* sessions.unreadable
        expect([...unreadable.keys()]).toEqual(["bad"])
        expect(unreadable.get("bad")).toContain('the entry "bad" is not a session entry')
        yield* sessions.merge("good", { ...v("g-1"), compactionCount: 1 })
        yield* sessions.merge("new", { ...v("n-1"), compactionCount: 1 })
        yield* sessions.flush
        // Another writer changes a good entry; the next flush reads the file again.
        const again = JSON.parse(yield* fs.readFileString(file))
        again.other.compactionCount = 3
        yield* fs.writeFileString(file, JSON.stringify(again, null, 2))
        yield* sessions.merge("new", { ...v("n-1"), compactionCount: 2 })
        yield* sessions.flush
        expect([...(yield* sessions.unreadable).keys()]).toEqual(["bad"])
      }).pipe(Effect.provide(store), Effect.provide(capture))
      expect(yield* fs.exists(`${file}.corrupt-0`)).toBe(false)
      expect(logs.filter((l) => l.includes('"bad"') && l.includes("cannot be served"))).toHaveLength(1)
      const onDisk: Record<string, unknown> = JSON.parse(yield* fs.readFileString(file))
      expect(Object.keys(onDisk)).toEqual(["good", "bad", "other", "new"])
      expect(onDisk.bad).toEqual({ sessionId: 42, model: null, extra: ["kept", 1] })
      expect(onDisk.good).toMatchObject({ compactionCount: 1, deliveryContext: { channel: "telegram" } })
      expect(onDisk.other).toMatchObject({ compactionCount: 3 })
      expect(onDisk.new).toMatchObject({ compactionCount: 2 })
    }).pipe(Effect.provide(env))
  )

  it.scoped("a value that becomes an entry again is served again", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      yield* MemoryFileSystem.seed({ [file]: text })
      yield* Effect.gen(function* () {
        const sessions = yield* SessionStore
        const fixed = JSON.parse(yield* fs.readFileString(file))
        fixed.bad = { sessionId: "b-1", compactionCount: 4 }
        yield* fs.writeFileString(file, JSON.stringify(fixed, null, 2))
        yield* sessions.merge("new", { ...v("n-1"), compactionCount: 1 })
        yield* sessions.flush
        expect((yield* sessions.unreadable).size).toBe(0)
        expect(Option.getOrThrow(yield* sessions.get("bad"))).toMatchObject({ compactionCount: 4 })
      }).pipe(Effect.provide(store))
    }).pipe(Effect.provide(env))
  )
})
