/**
 * Progress of `repair` and `sessions`: shown on a terminal (the binary run under `script`,
 * which gives it a pseudo-terminal), silent in a pipe and with `--json`.
 */
import { execFile } from "node:child_process"
import { Effect, TestClock, TestContext } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { Progress } from "../src/index.js"
import { BIN, cleanup, converge, fixtureCopy } from "./helpers.js"

afterAll(cleanup)

/** Runs the binary on a pseudo-terminal; answers everything the terminal showed. */
const onTerminal = (args: ReadonlyArray<string>): Promise<string> =>
  new Promise((resolve, reject) => {
    const command = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ")
    execFile(
      "script",
      ["-qec", command, "/dev/null"],
      { env: { ...process.env, NO_COLOR: "1" }, timeout: 55_000 },
      (error, stdout) => {
        if (error !== null && typeof error.code !== "number") return reject(error)
        resolve(stdout)
      }
    )
  })

const FOLDED = /(\d+) of (\d+) transcripts? folded/g

describe("progress while transcripts are folded", { timeout: 60_000 }, () => {
  it("shows n of N on a terminal for repair and sessions, ending at N of N", async () => {
    for (const args of [["repair", "--dry-run"], ["sessions"]]) {
      const dir = fixtureCopy()
      const shown = await onTerminal([...args, "--sessions-dir", dir])
      const counts = [...shown.matchAll(FOLDED)].map((m) => [Number(m[1]), Number(m[2])] as const)
      expect(counts.length, shown).toBeGreaterThan(0)
      const [folded, total] = counts.at(-1)!
      expect(total).toBeGreaterThanOrEqual(3)
      expect(folded).toBe(total)
    }
  })

  it("stays quiet when stderr is not a terminal, and with --json on one", async () => {
    const dir = fixtureCopy()
    const piped = await converge(["sessions", "--sessions-dir", dir])
    expect(piped.stderr).not.toMatch(FOLDED)
    const json = await onTerminal(["repair", "--dry-run", "--json", "--sessions-dir", dir])
    expect(json).not.toMatch(FOLDED)
    expect(json).toContain('"dryRun": true')
  })

  it("rewrites one line at most every 100 ms, and always shows the last count", async () => {
    const written: Array<string> = []
    const r = Progress.reporter({ tty: true, json: false, write: (t) => written.push(t) })!
    await Effect.runPromise(
      Effect.gen(function* () {
        yield* r.onProgress(1, 4)
        yield* r.onProgress(2, 4)
        yield* TestClock.adjust(100)
        yield* r.onProgress(3, 4)
        yield* r.onProgress(4, 4)
        yield* r.finish
      }).pipe(Effect.provide(TestContext.TestContext))
    )
    expect(written.map((t) => t.replace("\r\x1b[K", ""))).toEqual([
      "1 of 4 transcripts folded",
      "3 of 4 transcripts folded",
      "4 of 4 transcripts folded",
      "\n"
    ])
    expect(Progress.reporter({ tty: false, json: false, write: () => {} })).toBeUndefined()
    expect(Progress.reporter({ tty: true, json: true, write: () => {} })).toBeUndefined()
  })
})
