/**
 * Structured logs: one JSON object per line, annotations as top-level fields.
 */
import { Effect, Logger } from "effect"
import { describe, expect, it } from "vitest"
import { Logging } from "../src/index.js"

const capture = (effect: Effect.Effect<void>) => {
  const lines: Array<string> = []
  Effect.runSync(
    effect.pipe(
      Effect.provide(
        Logger.replace(
          Logger.defaultLogger,
          Logging.jsonLogger((l) => lines.push(l))
        )
      )
    )
  )
  return lines
}

describe("logging", () => {
  it("writes one JSON object per line, with the ids as top-level fields", () => {
    const lines = capture(
      Effect.logInfo("turn timed_out").pipe(
        Logging.withIds({ sessionKey: "chat:1", runId: "run_1", compactionId: "cmp_1" }),
        Effect.annotateLogs({ outcome: "timed_out" })
      )
    )
    expect(lines).toHaveLength(1)
    expect(lines[0]).not.toContain("\n")
    expect(JSON.parse(lines[0]!)).toMatchObject({
      level: "INFO",
      message: "turn timed_out",
      sessionKey: "chat:1",
      runId: "run_1",
      compactionId: "cmp_1",
      outcome: "timed_out",
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/)
    })
  })

  it("leaves out ids that are absent and keeps a failure's cause on the same line", () => {
    const lines = capture(
      Effect.logError("cannot start", new Error("boom\nsecond line")).pipe(
        Logging.withIds({ sessionKey: undefined })
      )
    )
    const line = JSON.parse(lines[0]!) as Record<string, unknown>
    expect(line).not.toHaveProperty("sessionKey")
    expect(line.level).toBe("ERROR")
    expect(lines[0]!.split("\n")).toHaveLength(1)
  })
})
