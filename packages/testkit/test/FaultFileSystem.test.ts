import * as FileSystem from "@effect/platform/FileSystem"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Layer, Option } from "effect"
import { FaultControl, FaultFileSystem, MemoryFileSystem } from "../src/index.js"

const TestLayer = FaultFileSystem.layer.pipe(
  Layer.provide(MemoryFileSystem.layerWith({ files: { "/s/sessions.json": "old" } }))
)

/** An atomic replace as the store does it: temp file, write, fsync, rename. */
const atomicWrite = (content: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    yield* Effect.scoped(
      Effect.gen(function* () {
        const file = yield* fs.open("/s/sessions.json.tmp", { flag: "w" })
        yield* file.writeAll(new TextEncoder().encode(content))
        yield* file.sync
      })
    )
    yield* fs.rename("/s/sessions.json.tmp", "/s/sessions.json")
  })

const EXPECTED_CALLS = ["open", "File.writeAll", "File.sync", "rename"]

const current = Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString("/s/sessions.json"))

describe("FaultFileSystem", () => {
  it.effect("records the name of every call, file handle calls included", () =>
    Effect.gen(function* () {
      const control = yield* FaultControl
      yield* atomicWrite("new")
      expect(yield* control.calls).toEqual(EXPECTED_CALLS)
      yield* control.arm({ at: 100, mode: "fail" })
      expect(yield* control.calls).toEqual([])
      const fs = yield* FileSystem.FileSystem
      yield* fs.exists("/s")
      yield* Effect.scoped(
        Effect.gen(function* () {
          const file = yield* fs.open("/s/sessions.json", { flag: "r+" })
          yield* file.seek(1, "start")
          yield* file.readAlloc(1)
          yield* file.read(new Uint8Array(1))
          yield* file.write(new Uint8Array([65]))
          yield* file.truncate(2)
          yield* file.stat
        })
      )
      yield* fs.writeFileString("/s/x", "x")
      yield* fs.readFile("/s/x")
      yield* fs.remove("/s/x")
      expect(yield* control.calls).toEqual([
        "exists",
        "open",
        "File.readAlloc",
        "File.read",
        "File.write",
        "File.truncate",
        "File.stat",
        "writeFileString",
        "readFile",
        "remove"
      ])
      expect(yield* control.triggered).toBe(false)
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("fails exactly the n-th call, for every n of an atomic write", () =>
    Effect.gen(function* () {
      for (let at = 0; at < EXPECTED_CALLS.length; at++) {
        yield* Effect.scoped(
          Effect.gen(function* () {
            const control = yield* FaultControl
            yield* control.arm({ at, mode: "fail", reason: "WriteZero" })
            const exit = yield* Effect.exit(atomicWrite("new"))
            expect(yield* control.triggered).toBe(true)
            expect(yield* control.calls).toEqual(EXPECTED_CALLS.slice(0, at + 1))
            const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
            expect(
              Option.map(error, (e) => [e._tag, e._tag === "SystemError" ? e.reason : "", e.method])
            ).toEqual(Option.some(["SystemError", "WriteZero", EXPECTED_CALLS[at]]))
            // The faulted call did not happen: the target keeps its old content.
            expect(yield* current).toBe("old")
            // One shot: the same write succeeds afterwards.
            yield* atomicWrite("new")
            expect(yield* current).toBe("new")
          }).pipe(Effect.provide(TestLayer))
        )
      }
    })
  )

  it.effect("interrupts the n-th call before it happens, for every n", () =>
    Effect.gen(function* () {
      for (let at = 0; at < EXPECTED_CALLS.length; at++) {
        yield* Effect.scoped(
          Effect.gen(function* () {
            const control = yield* FaultControl
            yield* control.arm({ at, mode: "interrupt" })
            const exit = yield* Effect.exit(atomicWrite("new"))
            expect(Exit.isInterrupted(exit)).toBe(true)
            expect(yield* control.calls).toEqual(EXPECTED_CALLS.slice(0, at + 1))
            expect(yield* current).toBe("old")
          }).pipe(Effect.provide(TestLayer))
        )
      }
    })
  )

  it.effect("inside an uninterruptible region the call completes and the fiber is interrupted after it", () =>
    Effect.gen(function* () {
      const control = yield* FaultControl
      yield* control.arm({ at: 3, mode: "interrupt" })
      let after = false
      const fiber = yield* Effect.fork(
        Effect.uninterruptible(atomicWrite("new")).pipe(
          Effect.zipRight(
            Effect.sync(() => {
              after = true
            })
          )
        )
      )
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(yield* current).toBe("new")
      expect(after).toBe(false)
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("disarm cancels a pending fault", () =>
    Effect.gen(function* () {
      const control = yield* FaultControl
      yield* control.arm({ at: 1, mode: "fail" })
      yield* control.disarm
      yield* atomicWrite("new")
      expect(yield* control.calls).toEqual(EXPECTED_CALLS)
      expect(yield* control.triggered).toBe(false)
      expect(yield* current).toBe("new")
    }).pipe(Effect.provide(TestLayer))
  )
})
