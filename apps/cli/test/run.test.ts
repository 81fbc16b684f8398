import { afterAll, describe, expect, it } from "vitest"
import { cleanup, converge, fixtureCopy, KEYS, row, sessionsJson } from "./helpers.js"

afterAll(cleanup)

describe("converge compact and demo", () => {
  it("compact runs a compaction through the runtime and prints tokens before and after", async () => {
    const dir = fixtureCopy()
    const ran = await converge(["compact", KEYS.main, "--json", "--sessions-dir", dir], {
      CONVERGE_KEEP_RECENT_TOKENS: "200",
      CONVERGE_LOCAL_SUMMARY_MS: "0"
    })
    expect(ran.stderr).toBe("")
    expect(ran.code).toBe(0)
    const result = JSON.parse(ran.stdout)
    expect(result).toMatchObject({
      state: "completed",
      joined: false,
      status: { sessionKey: KEYS.main, compactionCount: 2 }
    })
    expect(result.tokensAfter).toBeLessThan(result.tokensBefore)
    expect(sessionsJson(dir)[KEYS.main]?.compactionCount).toBe(2)
  })

  it("demo shows the turn timing out while its compaction runs on, then the converged count", async () => {
    const started = Date.now()
    const ran = await converge(["demo"])
    expect(ran.stderr).toBe("")
    expect(ran.code).toBe(0)
    expect(ran.stdout).toMatch(/TurnFinished\s+run_\w+: timed_out \(timeout: turn\)/)
    expect(ran.stdout).toMatch(/CompactionCompleted\s+cmp_\w+: ordinal 1/)
    expect(row(ran.stdout, "compactionCount")).toEqual(["compactionCount", "0", "1"])
    expect(row(ran.stdout, "tokens.fresh")?.[2]).toBe("yes")
    expect(Date.now() - started).toBeLessThan(30_000)
  })
})
