/**
 * A flush broken at every file-system call in turn, by a failure or an interruption:
 * `sessions.json` is never empty, partial or unparseable, and the next flush succeeds.
 */
import { FaultControl, FaultFileSystem, MemoryFileSystem } from "@converge/testkit"
import { FileSystem, Path } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer } from "effect"
import { parseSessionsFile, SessionStore } from "../src/index.js"
import { fixtureFiles, v } from "./helpers.js"

const dir = "/state/sessions"
const file = `${dir}/sessions.json`

const env = Layer.merge(FaultFileSystem.layer.pipe(Layer.provideMerge(MemoryFileSystem.layer)), Path.layer)

const seedFixture = MemoryFileSystem.seed(
  Object.fromEntries(Object.entries(fixtureFiles()).map(([name, text]) => [`${dir}/${name}`, text]))
)

/** The entries of `sessions.json`, failing the test if it is not a whole, readable file. */
const readWhole = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const text = yield* fs.readFileString(file)
  const parsed = parseSessionsFile(text)
  expect(parsed._tag).toBe("Ok")
  if (parsed._tag !== "Ok") return new Map()
  expect(parsed.bad).toEqual([])
  return new Map(parsed.entries)
})

describe.each(["fail", "interrupt"] as const)("a flush broken by a fault (%s)", (mode) => {
  it.scoped(`leaves sessions.json whole at every call, and the next flush succeeds`, () =>
    Effect.gen(function* () {
      yield* seedFixture
      const control = yield* FaultControl
      const fs = yield* FileSystem.FileSystem
      yield* Effect.gen(function* () {
        const store = yield* SessionStore
        // A clean flush first, to learn how many calls one flush makes.
        yield* store.merge("probe", { ...v("p-0"), compactionCount: 1 })
        yield* control.arm({ at: 1_000_000, mode })
        yield* store.flush
        const calls = yield* control.calls
        yield* control.disarm
        expect(calls).toContain("rename")
        expect(calls).toContain("File.sync")
        // Each call of a flush in turn: lock, read, temp file, write, fsync, rename, directory fsync, unlock.
        for (let at = 0; at < calls.length; at++) {
          const before = yield* readWhole
          const key = `k${at}`
          yield* store.merge(key, { ...v(`s-${at}`), compactionCount: at + 1 })
          yield* store.merge("probe", { ...v("p-0"), compactionCount: at + 2 })
          yield* control.arm({ at, mode })
          const exit = yield* Fiber.await(yield* Effect.fork(store.flush))
          expect(yield* control.triggered).toBe(true)
          yield* control.disarm
          const after = yield* readWhole
          if (after.has(key)) {
            expect(after.get("probe")?.compactionCount).toBe(at + 2)
          } else {
            expect(after).toEqual(before)
            expect(Exit.isFailure(exit)).toBe(true)
          }
          yield* store.flush
          const next = yield* readWhole
          expect(next.get(key)?.compactionCount).toBe(at + 1)
          expect(next.get("probe")?.compactionCount).toBe(at + 2)
          expect(next.get("agent:main:main")?.deliveryContext).toEqual({
            channel: "telegram",
            to: "user:4242",
            accountId: "default"
          })
          expect(yield* fs.exists(`${file}.lock`)).toBe(false)
          const leftovers = (yield* fs.readDirectory(dir)).filter(
            (n) => n.includes(".tmp-") || n.includes(".stale-")
          )
          expect(leftovers).toEqual([])
        }
      }).pipe(Effect.provide(SessionStore.layerFile({ sessionsDir: dir, flushIntervalMs: 50 })))
    }).pipe(Effect.provide(env))
  )
})
