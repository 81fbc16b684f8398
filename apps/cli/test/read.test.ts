import { existsSync, readdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { createRuntime } from "@converge/runtime"
import { afterAll, describe, expect, it } from "vitest"
import { cleanup, converge, fixtureCopy, KEYS, row, snapshot, tempDir } from "./helpers.js"

afterAll(cleanup)

/** A one-line error on stderr, nothing on stdout, a non-zero exit. */
const expectOneLineError = (ran: { code: number; stdout: string; stderr: string }, text: string) => {
  expect(ran.code).toBe(1)
  expect(ran.stdout).toBe("")
  expect(ran.stderr.trim().split("\n")).toHaveLength(1)
  expect(ran.stderr).toContain(text)
}

describe("converge status and sessions", () => {
  it("status --json and sessions --json report what the runtime serves for the same directory, and write nothing", async () => {
    const dir = fixtureCopy()
    const before = snapshot(dir)
    const [status, sessions, table] = await Promise.all([
      converge(["status", KEYS.dm, "--json", "--sessions-dir", dir]),
      converge(["sessions", "--json", "--sessions-dir", dir]),
      converge(["status", KEYS.dm, "--sessions-dir", dir])
    ])
    expect([status.code, sessions.code, table.code]).toEqual([0, 0, 0])
    expect(snapshot(dir)).toEqual(before)
    // Before any repair, the transcript's 4 compactions already show.
    const s = JSON.parse(status.stdout)
    expect(s).toMatchObject({
      sessionKey: KEYS.dm,
      compactionCount: 4,
      compaction: { state: "idle" },
      tokens: { context: 12300, window: 200000, fresh: true, asOfSeq: 23 }
    })
    expect(row(table.stdout, "compactionCount")).toEqual(["compactionCount", "4"])

    // The values the HTTP API serves come from the same runtime (apps/gateway embeds it).
    const rt = await createRuntime({ sessionsDir: dir, model: "local" })
    try {
      expect(s).toEqual(await rt.status(KEYS.dm))
      expect(JSON.parse(sessions.stdout)).toEqual({ sessions: await rt.sessions() })
    } finally {
      await rt.dispose()
    }
  })

  it("bad input is a one-line error and a non-zero exit, and writes nothing", async () => {
    const dir = fixtureCopy()
    const before = snapshot(dir)
    const empty = tempDir()
    const missing = join(tempDir(), "missing")
    const zero = fixtureCopy()
    writeFileSync(join(zero, "sessions.json"), "")
    const zeroBefore = snapshot(zero)
    const [unknownKey, badKey, missingDir, notSessions, unreadable, compactUnknown] = await Promise.all([
      converge(["status", "agent:main:nobody", "--sessions-dir", dir]),
      converge(["status", "bad key/../x", "--sessions-dir", dir]),
      converge(["sessions", "--sessions-dir", missing]),
      converge(["repair", "--sessions-dir", empty]),
      converge(["sessions", "--sessions-dir", zero]),
      converge(["compact", "agent:main:nobody", "--sessions-dir", dir])
    ])
    expectOneLineError(unknownKey, 'no session is stored under the key "agent:main:nobody"')
    expectOneLineError(badKey, "invalid session key")
    expectOneLineError(missingDir, "does not exist")
    expectOneLineError(notSessions, "is not a sessions directory")
    expectOneLineError(unreadable, "it is empty (0 bytes)")
    expectOneLineError(compactUnknown, 'no session is stored under the key "agent:main:nobody"')
    expect(snapshot(dir)).toEqual(before)
    expect(snapshot(zero)).toEqual(zeroBefore)
    expect(existsSync(missing)).toBe(false)
    expect(readdirSync(empty)).toEqual([])
  })
})
