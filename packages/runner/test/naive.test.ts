/**
 * Every scenario, run on the naive variant SCENARIOS.md assigns it, must fail there:
 * otherwise the scenario would not prove anything. A naive variant may also hang (a
 * frozen lane, a compaction nobody finishes): that counts as failing, after 3 s of real time.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option } from "effect"
import { naiveFor } from "./naive.js"
import { scenarios } from "./scenarios.js"

const realSleep = (ms: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, ms)))

describe("scenarios on the naive variants fail", () => {
  for (const [name, scenario] of Object.entries(scenarios)) {
    const id = name.split(" ")[0]!
    const variant = naiveFor[id]
    if (variant === undefined) throw new Error(`no naive variant for ${id}`)
    it.scoped(`${id} fails on the ${variant.name}`, () =>
      Effect.gen(function* () {
        const fiber = yield* Effect.fork(Effect.scoped(scenario({ variant })))
        for (let waited = 0; waited < 3_000; waited += 50) {
          if (Option.isSome(yield* Fiber.poll(fiber))) break
          yield* realSleep(50)
        }
        const exit = yield* Fiber.poll(fiber)
        if (Option.isNone(exit)) {
          // Hung: the naive variant never reached the state the scenario requires.
          yield* Fiber.interruptFork(fiber)
          return
        }
        expect(Exit.isFailure(exit.value)).toBe(true)
      })
    )
  }
})
