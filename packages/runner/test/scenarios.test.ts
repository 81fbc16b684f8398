/**
 * SCENARIOS.md S1–S19 at the runner level, under TestClock on the in-memory file system.
 * `naive.test.ts` runs the same scenario functions on the naive variants, expecting failures.
 */
import { describe, it } from "@effect/vitest"
import { scenarios } from "./scenarios.js"

describe("scenarios on Converge", () => {
  for (const [name, scenario] of Object.entries(scenarios)) {
    it.scoped(name, () => scenario({}))
  }
})
