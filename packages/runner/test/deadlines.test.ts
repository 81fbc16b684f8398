import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, TestClock } from "effect"
import { type Deadline, DeadlineHeap, makeDeadlines } from "../src/Deadlines.js"
import { settle } from "./harness.js"

const entry = (at: number): Deadline => ({ at, done: false, onDue: Effect.void })

describe("DeadlineHeap", () => {
  it("pops deadlines earliest first, equal ones in insertion order", () => {
    const heap = new DeadlineHeap()
    const ats = [50, 10, 40, 10, 30, 20, 50, 0, 10]
    const entries = ats.map(entry)
    for (const e of entries) heap.push(e)
    const out: Array<Deadline> = []
    for (let d = heap.pop(); d !== undefined; d = heap.pop()) out.push(d)
    expect(out.map((d) => d.at)).toEqual([0, 10, 10, 10, 20, 30, 40, 50, 50])
    // The three 10s in the order they were pushed.
    expect(out.slice(1, 4)).toEqual([entries[1], entries[3], entries[8]])
    expect(heap.size).toBe(0)
  })

  it("compact drops the entries that are done and keeps the order of the rest", () => {
    const heap = new DeadlineHeap()
    const entries = Array.from({ length: 100 }, (_, i) => entry((i * 37) % 101))
    for (const e of entries) heap.push(e)
    for (const e of entries) if (e.at % 3 === 0) e.done = true
    heap.compact()
    const out: Array<number> = []
    for (let d = heap.pop(); d !== undefined; d = heap.pop()) out.push(d.at)
    const expected = entries
      .filter((e) => e.at % 3 !== 0)
      .map((e) => e.at)
      .sort((a, b) => a - b)
    expect(out).toEqual(expected)
  })
})

describe("makeDeadlines", () => {
  it.scoped(
    "runs onDue exactly at the deadline, skips cancelled ones, and sleeps only while one is pending",
    () =>
      Effect.gen(function* () {
        const deadlines = yield* makeDeadlines
        const fired: Array<[string, number]> = []
        const at = (name: string) =>
          Effect.flatMap(TestClock.currentTimeMillis, (now) => Effect.sync(() => fired.push([name, now])))
        yield* deadlines.add(300, at("c"))
        const b = yield* deadlines.add(200, at("b"))
        // Earlier than the sleeper's wake-up: it starts over.
        yield* deadlines.add(100, at("a"))
        yield* settle
        deadlines.cancel(b)
        yield* TestClock.adjust(99)
        yield* settle
        expect(fired).toEqual([])
        yield* TestClock.adjust(1)
        yield* settle
        expect(fired).toEqual([["a", 100]])
        yield* TestClock.adjust(200)
        yield* settle
        expect(fired).toEqual([
          ["a", 100],
          ["c", 300]
        ])
        // Nothing pending: no sleep is left behind.
        expect(Chunk.toReadonlyArray(yield* TestClock.sleeps()).filter((t) => t > 300)).toEqual([])
        yield* deadlines.add(1_000, at("d"))
        yield* settle
        yield* TestClock.adjust(700)
        yield* settle
        expect(fired.at(-1)).toEqual(["d", 1_000])
      })
  )

  it.scoped("many cancelled deadlines do not pile up", () =>
    Effect.gen(function* () {
      const deadlines = yield* makeDeadlines
      let fired = 0
      const live = yield* deadlines.add(
        10_000_000,
        Effect.sync(() => fired++)
      )
      for (let i = 0; i < 5_000; i++) {
        const d = yield* deadlines.add(
          20_000_000 + i,
          Effect.sync(() => fired++)
        )
        deadlines.cancel(d)
      }
      yield* TestClock.adjust(30_000_000)
      yield* settle
      expect(fired).toBe(1)
      expect(live.done).toBe(true)
    })
  )
})
