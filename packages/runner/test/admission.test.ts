/**
 * Admission control (issue 14): the controller's rule on explicit times, and the runner under
 * TestClock — a burst beyond the bound is refused at once with `Overloaded`, the admitted turns
 * complete, and a manual compaction is admitted during the burst.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option } from "effect"
import { AdmissionControl } from "../src/Admission.js"
import { Runner } from "../src/Runner.js"
import { advance, done, makeLayer, settle, words } from "./harness.js"

/** Admits `n` turns at `now`; how many were admitted. */
const admitMany = (control: AdmissionControl, n: number, now: number, timeoutMs?: number) => {
  let admitted = 0
  for (let i = 0; i < n; i++) if (control.admit(now, timeoutMs).admitted) admitted++
  return admitted
}

/** `n` turns end at `now`, each having waited `externalMs`, and each is replaced; how many were admitted. */
const turnOver = (control: AdmissionControl, n: number, now: number, externalMs = 0) => {
  let admitted = 0
  for (let i = 0; i < n; i++) {
    control.release(now, externalMs)
    if (control.admit(now).admitted) admitted++
  }
  return admitted
}

describe("AdmissionControl", () => {
  it("admits initialTurns until a capacity is measured, then refuses with a retry time", () => {
    const control = new AdmissionControl({ maxTurns: 1000, budgetMs: 500, initialTurns: 4 }, 0)
    expect(admitMany(control, 4, 0)).toBe(4)
    const refused = control.admit(0)
    expect(refused).toEqual({ admitted: false, retryAfterMs: 100, reason: "budget" })
    expect(control.stats(0)).toMatchObject({ inFlight: 4, capacity: undefined, admitted: 4, refused: 1 })
  })

  it("measures capacity in a saturated window and bounds the turns in flight by it × budget", () => {
    const control = new AdmissionControl({ maxTurns: 10_000, budgetMs: 500, initialTurns: 10 }, 0)
    expect(admitMany(control, 10, 0)).toBe(10)
    // 20 turns end within the window (each replaced at once): the runner did 200 turns/s.
    expect(turnOver(control, 20, 50)).toBe(20)
    const stats = control.stats(100)
    expect(stats.capacity).toBe(200)
    // 200 turns/s × 0.5 s: 100 may be in flight.
    expect(stats.limit).toBe(100)
    expect(admitMany(control, 200, 100)).toBe(90)
    const refused = control.admit(100)
    expect(refused.admitted).toBe(false)
    // One turn past the bound, at 200/s: 5 ms, but never less than a window.
    if (!refused.admitted) expect(refused.retryAfterMs).toBe(100)
  })

  it("does not lower capacity in a window where demand, not the runner, was the limit", () => {
    const control = new AdmissionControl({ maxTurns: 10_000, budgetMs: 1000, initialTurns: 2 }, 0)
    admitMany(control, 2, 0)
    turnOver(control, 10, 10)
    expect(control.stats(100).capacity).toBe(100)
    // A quiet window: one turn ends, nothing waits.
    control.release(150)
    control.release(150)
    expect(control.stats(250).capacity).toBe(100)
  })

  it("follows a saturated runner down when it gets slower", () => {
    const control = new AdmissionControl({ maxTurns: 10_000, budgetMs: 100, initialTurns: 2 }, 0)
    admitMany(control, 2, 0)
    turnOver(control, 10, 10)
    expect(control.stats(100).capacity).toBe(100)
    // Now at its bound (10 in flight) and ending only 2 turns per window: 20/s.
    admitMany(control, 8, 100)
    expect(control.admit(100).admitted).toBe(false)
    control.release(150)
    control.release(160)
    const after = control.stats(200).capacity ?? 0
    expect(after).toBeLessThan(100)
    expect(after).toBeGreaterThan(20)
  })

  it("cuts the capacity when admitted turns spent longer than the budget in the runner", () => {
    const control = new AdmissionControl({ maxTurns: 10_000, budgetMs: 1000, initialTurns: 10 }, 0)
    admitMany(control, 10, 0, 1000)
    // 40 turns end within the window, each replaced: 400 turns/s, having taken 100 ms each.
    for (let i = 0; i < 40; i++) {
      control.release(50, 0, true, 100)
      control.admit(50, 1000)
    }
    expect(control.stats(100).capacity).toBe(400)
    // The next window's turns took 2 s in the runner, 4× the 500 ms budget of a 1 s timeout,
    // at the same rate: the estimate is cut by at most half per window, not by the rate.
    admitMany(control, 1000, 100, 1000)
    for (let i = 0; i < 40; i++) control.release(150, 0, true, 2000)
    const cut = control.stats(200).capacity ?? 0
    expect(cut).toBeLessThan(400)
    expect(cut).toBeGreaterThanOrEqual(0.5 * (0.7 * 400 + 0.3 * 400))
    // Time waiting on the model is not time in the runner: no cut.
    const slowModel = new AdmissionControl({ maxTurns: 10_000, budgetMs: 1000, initialTurns: 10 }, 0)
    admitMany(slowModel, 10, 0, 1000)
    for (let i = 0; i < 40; i++) {
      slowModel.release(50, 1900, true, 2000)
      slowModel.admit(50, 1000)
    }
    expect(slowModel.stats(100).capacity).toBe(400)
  })

  it("refuses a turn queued behind its session's turns when, saturated, they would not end within the budget", () => {
    const control = new AdmissionControl({ maxTurns: 10_000, budgetMs: 1000, initialTurns: 10 }, 0)
    admitMany(control, 10, 0, 1000)
    // Saturated, the turns take 400 ms in the runner; a turn's budget is 500 ms (1 s timeout).
    for (let i = 0; i < 40; i++) {
      control.release(50, 0, true, 400)
      control.admit(50, 1000)
    }
    control.stats(100)
    // At its bound (400/s × 0.5 s = 200 in flight), then a few end: saturated, room for some.
    admitMany(control, 1000, 100, 1000)
    for (let i = 0; i < 5; i++) control.release(110, 0, true, 400)
    expect(control.admit(110, 1000, 0).admitted).toBe(true)
    // One turn ahead (halfway through): it starts in ~200 ms and ends ~400 ms later, past 500 ms.
    const refused = control.admit(110, 1000, 1)
    expect(refused).toMatchObject({ admitted: false, reason: "lane" })
    // With a 10 s timeout (budget 1 s) it fits.
    expect(control.admit(110, 10_000, 1).admitted).toBe(true)
    // Not saturated (a quiet runner): the lane alone refuses nothing.
    const quiet = new AdmissionControl({ maxTurns: 10_000, budgetMs: 1000, initialTurns: 1000 }, 0)
    quiet.admit(0, 1000)
    quiet.release(50, 0, true, 400)
    quiet.stats(100)
    expect(quiet.admit(100, 1000, 3).admitted).toBe(true)
  })

  it("is not overloaded by a slow model: time waiting on the model widens the bound", () => {
    const control = new AdmissionControl({ maxTurns: 10_000, budgetMs: 100, initialTurns: 10 }, 0)
    admitMany(control, 10, 0)
    // Ten turns end in the window, each having waited 1 s on the model.
    turnOver(control, 10, 50, 1000)
    const stats = control.stats(100)
    expect(stats.capacity).toBe(100)
    expect(stats.externalMs).toBeGreaterThan(600)
    // Without the wait the bound would be 100/s × 0.1 s = 10.
    expect(stats.limit).toBeGreaterThan(60)
  })

  it("refuses past maxTurns whatever the budget, and with budget 0 only there", () => {
    const control = new AdmissionControl({ maxTurns: 3, budgetMs: 0 }, 0)
    expect(admitMany(control, 10, 0)).toBe(3)
    const refused = control.admit(0)
    expect(refused.admitted === false && refused.reason).toBe("maxTurns")
    control.release(1)
    expect(control.admit(1).admitted).toBe(true)
  })

  it("bounds a turn by its own timeout when it is shorter than the budget", () => {
    const control = new AdmissionControl({ maxTurns: 10_000, budgetMs: 1000, initialTurns: 4 }, 0)
    admitMany(control, 4, 0)
    turnOver(control, 100, 50)
    // 1,000 turns/s: a budget of 1 s admits 1,000; a turn with a 20 ms timeout may wait half
    // of it to start, so only while fewer than 10 are in flight.
    expect(control.stats(100).limit).toBe(1000)
    expect(admitMany(control, 100, 100, 20)).toBe(6)
  })

  it("does not read turns stopped by their deadline as capacity", () => {
    const control = new AdmissionControl({ maxTurns: 10_000, budgetMs: 1000, initialTurns: 10 }, 0)
    admitMany(control, 10, 0)
    turnOver(control, 10, 50)
    expect(control.stats(100).capacity).toBe(100)
    // 10 turns end served and 500 at once by their deadline, in one window.
    admitMany(control, 500, 100)
    for (let i = 0; i < 10; i++) control.release(150)
    for (let i = 0; i < 500; i++) control.release(150, 0, false)
    expect(control.stats(200).capacity).toBe(100)
  })

  it("always admits one turn, however low the measured capacity", () => {
    const control = new AdmissionControl({ maxTurns: 10, budgetMs: 1, initialTurns: 1 }, 0)
    expect(control.admit(0).admitted).toBe(true)
    control.release(5_000)
    expect(control.admit(10_000).admitted).toBe(true)
    expect(control.stats(10_000).inFlight).toBe(1)
  })
})

describe("Runner admission (TestClock)", () => {
  it.scoped(
    "a burst past maxTurns gets Overloaded at once; admitted turns complete; /compact is admitted",
    () =>
      Effect.gen(function* () {
        const runner = yield* Runner
        // Session c exists before the burst, with a history to compact.
        for (let i = 0; i < 3; i++) yield* runner.turn("c", words(400, `c${i}`)).pipe(Effect.fork)
        yield* advance(3000)
        const burst = yield* Effect.forEach(
          Array.from({ length: 10 }, (_, i) => `s${i}`),
          (key) => Effect.fork(Effect.exit(runner.turn(key, words(50, key)))),
          { concurrency: "unbounded" }
        )
        yield* settle
        // No time has passed: the six past the bound are already answered.
        const early = yield* Effect.forEach(burst, Fiber.poll)
        const refused = early.filter((o) => Option.isSome(o))
        expect(refused).toHaveLength(6)
        for (const o of refused) {
          // The fiber's own exit is a success: it holds the turn's exit.
          const fiberExit = Option.getOrThrow(o)
          if (Exit.isFailure(fiberExit)) throw new Error("a burst fiber failed")
          const exit = fiberExit.value
          expect(Exit.isFailure(exit)).toBe(true)
          if (Exit.isFailure(exit)) {
            const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
            expect(error?._tag).toBe("Overloaded")
            expect(error?._tag === "Overloaded" && error.retryAfterMs).toBeGreaterThan(0)
          }
        }
        expect((yield* runner.admission).inFlight).toBe(4)
        // A refused turn ran nothing: its session was never created.
        const refusedKeys = burst.flatMap((_, i) => (Option.isSome(early[i]!) ? [`s${i}`] : []))
        const missing = yield* Effect.either(runner.status(refusedKeys[0]!))
        expect(missing._tag === "Left" && missing.left._tag).toBe("SessionNotFound")
        // A manual compaction is not a turn: admitted while the turns are refused.
        const compaction = yield* Effect.fork(runner.compact("c", {}))
        yield* advance(1000)
        const compacted = yield* done(compaction)
        expect(compacted.state).toBe("completed")
        for (const fiber of burst) {
          const exit = yield* Fiber.join(fiber)
          if (Exit.isSuccess(exit)) expect(exit.value.outcome).toBe("completed")
        }
        const completed = (yield* Effect.forEach(burst, Fiber.join)).filter(Exit.isSuccess)
        expect(completed).toHaveLength(4)
        // Every admission was released: the next turn is admitted.
        expect((yield* runner.admission).inFlight).toBe(0)
        const next = yield* Effect.fork(runner.turn(refusedKeys[0]!, "again"))
        yield* advance(1000)
        expect((yield* done(next)).outcome).toBe("completed")
      }).pipe(Effect.provide(makeLayer({ config: { maxTurns: 4, localReplyMs: 1000, localSummaryMs: 500 } })))
  )
})
