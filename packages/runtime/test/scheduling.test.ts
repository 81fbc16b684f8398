/**
 * The sliced scheduler: the same tasks, in the order they came, cut into slices the event
 * loop can come between. What is asserted is an order of events, never a duration: each task
 * busy-waits long enough that a few of them outlast the slice.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SlicedScheduler } from "../src/Scheduling.js"

/** Keeps the thread busy for `ms` (a task that does real work). */
const busy = (ms: number) => {
  const end = performance.now() + ms
  while (performance.now() < end) {
    // spin
  }
}

describe("SlicedScheduler", () => {
  it("runs the tasks in the order they were scheduled, tasks scheduled by tasks after them", async () => {
    const scheduler = new SlicedScheduler(2)
    const ran: Array<string> = []
    await new Promise<void>((resolve) => {
      for (const name of ["a", "b", "c"])
        scheduler.scheduleTask(() => {
          ran.push(name)
          if (name === "a") scheduler.scheduleTask(() => ran.push("a2"), 0)
          if (name === "c") scheduler.scheduleTask(() => resolve(), 0)
        }, 0)
    })
    expect(ran).toEqual(["a", "b", "c", "a2"])
  })

  it("lets the event loop run between slices: an immediate queued first runs long before the last task", async () => {
    const scheduler = new SlicedScheduler(2)
    const ran: Array<string> = []
    const immediate = new Promise<void>((resolve) =>
      setImmediate(() => {
        ran.push("event loop")
        resolve()
      })
    )
    const tasks = new Promise<void>((resolve) => {
      for (let i = 0; i < 40; i++)
        scheduler.scheduleTask(() => {
          busy(0.5)
          ran.push(`task ${i}`)
          if (i === 39) resolve()
        }, 0)
    })
    await Promise.all([immediate, tasks])
    const at = ran.indexOf("event loop")
    // A slice of 2 ms holds about four tasks of 0.5 ms: the event loop comes well before the end.
    expect(at).toBeGreaterThan(0)
    expect(at).toBeLessThan(20)
    expect(ran.filter((r) => r !== "event loop")).toEqual(Array.from({ length: 40 }, (_, i) => `task ${i}`))
  })

  it("runs fibers: many busy fibers on it still let a timer in before they end", async () => {
    const scheduler = new SlicedScheduler(2)
    let fibersDone = false
    let timerFiredBeforeEnd: boolean | undefined
    setTimeout(() => {
      timerFiredBeforeEnd = !fibersDone
    }, 0)
    const work = Effect.forEach(
      Array.from({ length: 50 }, (_, i) => i),
      () =>
        Effect.gen(function* () {
          for (let step = 0; step < 4; step++) {
            busy(0.25)
            yield* Effect.yieldNow()
          }
        }),
      { concurrency: "unbounded", discard: true }
    )
    await Effect.runPromise(work.pipe(Effect.withScheduler(scheduler)))
    fibersDone = true
    await new Promise((resolve) => setTimeout(resolve, 5))
    expect(timerFiredBeforeEnd).toBe(true)
  })
})
