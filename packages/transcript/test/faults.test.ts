/**
 * Breaking an append at every file-system call in turn, by failure and by interruption:
 * the file never holds a partial line before a later complete one, the next append works,
 * and seqs advance only for what is in the file.
 */
import { describe, expect, it } from "@effect/vitest"
import { FaultControl, FaultFileSystem, MemoryFileSystem } from "@converge/testkit"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Cause, Context, Effect, Exit, Fiber, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { RESUME_INDEX } from "../src/internal/resume.js"
import { foldTranscript, Transcript } from "../src/index.js"
import { DM, fixtureDir, reply, user } from "./helpers.js"

const DIR = "/sessions"
const seeded = (withFixture: boolean) =>
  MemoryFileSystem.layerWith({
    files: withFixture
      ? { [`${DIR}/${DM}.jsonl`]: fs.readFileSync(path.join(fixtureDir, `${DM}.jsonl`)) }
      : { [`${DIR}/.keep`]: "" }
  })

/** Every complete line parses, and nothing follows the last newline. */
const wellFormed = (text: string) => {
  expect(text === "" || text.endsWith("\n")).toBe(true)
  for (const line of text.split("\n").slice(0, -1)) expect(() => JSON.parse(line)).not.toThrow()
}

type Step = (t: Transcript, sessionId: string) => Effect.Effect<unknown, unknown>

const appendTurn: Step = (t, id) => t.append(id, [user("question"), reply("answer", 0, 10, 5)])
const appendCompaction: Step = (t, id) =>
  Effect.flatMap(t.buildContext(id), (context) =>
    t.appendCompaction(id, {
      compactionId: "cmp_fault",
      firstKeptEntryId: context.entries[context.entries.length - 1]!.entry.id as string,
      build: (entries) => ({ summary: "s", tokensAfter: entries.length })
    })
  )

const runAt = (
  withFixture: boolean,
  sessionId: string,
  [step, size]: readonly [Step, number],
  at: number,
  mode: "fail" | "interrupt"
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const ctx = yield* Layer.build(
        Layer.mergeAll(Transcript.layer({ sessionsDir: DIR, leaseMs: 10_000 }), FaultFileSystem.layer).pipe(
          Layer.provideMerge(Layer.merge(FaultFileSystem.layer, Path.layer)),
          Layer.provideMerge(seeded(withFixture))
        )
      )
      const t = Context.get(ctx, Transcript)
      const control = Context.get(ctx, FaultControl)
      const memory = Context.get(ctx, FileSystem.FileSystem)
      const file = `${DIR}/${sessionId}.jsonl`
      const before = foldTranscript(
        sessionId,
        yield* memory.readFileString(file).pipe(Effect.orElseSucceed(() => ""))
      )
      yield* control.arm({ at, mode })
      // In its own fiber: an interrupt hits the fiber that made the call.
      const exit = yield* Fiber.await(yield* Effect.fork(step(t, sessionId)))
      const triggered = yield* control.triggered
      yield* control.disarm
      if (mode === "interrupt" && triggered)
        expect(Exit.isInterrupted(exit) || Exit.isSuccess(exit)).toBe(true)
      if (mode === "fail" && triggered && Exit.isFailure(exit))
        expect(Cause.isFailType(exit.cause) || Cause.isDie(exit.cause)).toBe(true)
      const middle = yield* memory.readFileString(file).pipe(Effect.orElseSucceed(() => ""))
      // No partial line before a complete one; the step's entries are all there or none is.
      for (const line of middle.split("\n").slice(0, -1)) expect(() => JSON.parse(line)).not.toThrow()
      const written = foldTranscript(sessionId, middle).lastSeq - before.lastSeq
      if (Exit.isSuccess(exit)) expect(written).toBe(size)
      else if (Exit.isInterrupted(exit)) expect([0, size]).toContain(written)
      else expect(written).toBe(0)
      // Whatever the fault left, the next append repairs and continues from what is in the file.
      const [next] = yield* t.append(sessionId, [user("after the fault")])
      const text = yield* memory.readFileString(file)
      wellFormed(text)
      const after = foldTranscript(sessionId, text)
      const kept = foldTranscript(sessionId, middle)
      expect(next!.seq).toBe(Math.max(kept.lastSeq, before.lastSeq) + 1)
      expect(after.lastSeq).toBe(next!.seq)
      expect(after.problems).toEqual([])
      expect(yield* t.fold(sessionId)).toEqual(after)
      return triggered
    })
  )

describe("faults at every file-system call", () => {
  for (const [name, step, withFixture, sessionId] of [
    ["appending a turn to the fixture (torn tail)", [appendTurn, 2], true, DM],
    ["appending the first turn of a new file", [appendTurn, 2], false, "fresh"],
    ["appending a compaction", [appendCompaction, 1], true, DM]
  ] as const) {
    for (const mode of ["fail", "interrupt"] as const) {
      it.scoped(`${name}: ${mode}`, () =>
        Effect.gen(function* () {
          let at = 0
          for (; at < 100; at++) if (!(yield* runAt(withFixture, sessionId, step, at, mode))) break
          expect(at).toBeGreaterThan(5)
          expect(at).toBeLessThan(100)
        })
      )
    }
  }
})

describe("durability", () => {
  it.scoped("a compaction entry is written and synced before appendCompaction returns", () =>
    Effect.gen(function* () {
      const ctx = yield* Layer.build(
        Transcript.layer({ sessionsDir: DIR }).pipe(
          Layer.provideMerge(Layer.merge(FaultFileSystem.layer, Path.layer)),
          Layer.provideMerge(seeded(true))
        )
      )
      const t = Context.get(ctx, Transcript)
      const control = Context.get(ctx, FaultControl)
      yield* t.append(DM, [user("warm up")])
      yield* control.arm({ at: 1_000, mode: "fail" })
      yield* appendCompaction(t, DM)
      const calls = yield* control.calls
      const write = calls.lastIndexOf("File.writeAll")
      expect(write).toBeGreaterThan(-1)
      expect(calls.slice(write + 1)).toContain("File.sync")
    })
  )
})

describe("an interrupted first read", () => {
  // The resume index is read once, by the first fold of the runtime, on the caller's fiber. A
  // turn whose deadline interrupted that read left the interruption as the read's cached
  // result: the folds after it failed as interrupted (turns "interrupted" with no deadline of
  // their own, in the burst test on a loaded machine).
  it.scoped("of the resume index does not interrupt the folds after it", () =>
    Effect.gen(function* () {
      const reading = yield* Effect.makeLatch(false)
      const release = yield* Effect.makeLatch(false)
      // The index read waits until the test lets it go (any other read goes through).
      const slowIndex = Layer.effect(
        FileSystem.FileSystem,
        Effect.map(FileSystem.FileSystem, (fs) =>
          FileSystem.make({
            ...fs,
            readFile: (file) =>
              file.endsWith(RESUME_INDEX)
                ? reading.open.pipe(Effect.zipRight(release.await), Effect.zipRight(fs.readFile(file)))
                : fs.readFile(file)
          })
        )
      )
      const ctx = yield* Layer.build(
        Transcript.layer({ sessionsDir: DIR, leaseMs: 10_000 }).pipe(
          Layer.provideMerge(Layer.merge(slowIndex, Path.layer)),
          Layer.provide(seeded(true))
        )
      )
      const t = Context.get(ctx, Transcript)
      const first = yield* Effect.fork(t.fold(DM))
      yield* reading.await
      yield* Fiber.interrupt(first)
      yield* release.open
      // Another session, and the same one again: neither is interrupted.
      const other = yield* Effect.exit(t.append("other", [user("after the interrupt")]))
      expect(Exit.isSuccess(other), Exit.isFailure(other) ? Cause.pretty(other.cause) : "").toBe(true)
      const again = yield* Effect.exit(t.fold(DM))
      expect(Exit.isSuccess(again), Exit.isFailure(again) ? Cause.pretty(again.cause) : "").toBe(true)
    })
  )
})
