/**
 * End-to-end: configuration the gateway refuses. Each stops start-up with exit code 1 and a
 * message naming the variable and the value, before anything listens.
 */
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { killAll, spawnGateway } from "./support/process.js"
import { removeTempDirs, tempDir } from "./support/http.js"

afterEach(killAll)
afterAll(removeTempDirs)

describe("gateway start-up", { timeout: 60_000 }, () => {
  it("refuses bad configuration with a message naming the variable and the value", async () => {
    const dir = await tempDir()
    const cases = [
      { env: { CONVERGE_TURN_TIMEOUT_MS: "-5" }, message: /CONVERGE_TURN_TIMEOUT_MS="-5" is not valid/ },
      {
        env: { CONVERGE_HOST: "0.0.0.0" },
        message: /CONVERGE_HOST="0\.0\.0\.0" is not a loopback address.*CONVERGE_TOKEN/
      }
    ]
    const results = await Promise.all(
      cases.map(async ({ env }) => {
        const gateway = spawnGateway({ CONVERGE_SESSIONS_DIR: dir, ...env })
        gateway.ready.catch(() => undefined)
        const exit = await gateway.exited
        return { exit, logs: gateway.logs }
      })
    )
    for (const [i, { exit, logs }] of results.entries()) {
      const { message } = cases[i]!
      expect(exit.code, JSON.stringify(cases[i]!.env)).toBe(1)
      const errors = logs.filter((line) => line.level === "ERROR")
      expect(errors.map((line) => String(line.message)).join("\n")).toMatch(message)
      expect(logs.some((line) => String(line.message).startsWith("Converge gateway listening"))).toBe(false)
    }
  })
})
