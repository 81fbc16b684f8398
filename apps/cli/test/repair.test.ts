import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { isOwnedField } from "@converge/store"
import { afterAll, describe, expect, it } from "vitest"
import { cleanup, converge, fixtureCopy, IDS, KEYS, row, sessionsJson, snapshot } from "./helpers.js"

afterAll(cleanup)

const backups = (dir: string) => readdirSync(dir).filter((n) => n.startsWith("sessions.json.bak-"))

describe("converge repair", () => {
  it("gives the fixture README's table, keeps a backup and every unknown field; --dry-run changes no byte; a second repair is byte-identical", async () => {
    const dir = fixtureCopy()
    const original = snapshot(dir)
    const originalBytes = readFileSync(join(dir, "sessions.json"))
    const originalJson = sessionsJson(dir)

    const dry = await converge(["repair", "--dry-run", "--sessions-dir", dir])
    expect(dry.stderr).toBe("")
    // Torn line and missing transcript: problems repair cannot fix.
    expect(dry.code).toBe(2)
    expect(snapshot(dir)).toEqual(original)
    expect(dry.stdout).toContain("nothing was written")

    const first = await converge(["repair", "--sessions-dir", dir])
    expect(first.code).toBe(2)
    // The README's table: main 1 → 1, dm:4242 0 → 4 (torn line reported), discord:99 2 → 2 (missing).
    const dm = row(first.stdout, KEYS.dm)
    expect(dm?.slice(0, 3)).toEqual([KEYS.dm, "0", "4"])
    expect(dm?.[3]).toContain("compactionCount 0→4")
    expect(dm?.[3]).toContain("tokens 181000→12300")
    expect(dm?.[4]).toMatch(/seq 25\) is torn/)
    const main = row(first.stdout, KEYS.main)
    expect(main?.slice(0, 3)).toEqual([KEYS.main, "1", "1"])
    expect(main?.[4]).toBe("—")
    const discord = row(first.stdout, KEYS.discord)
    expect(discord?.slice(0, 3)).toEqual([KEYS.discord, "2", "2"])
    expect(discord?.[4]).toContain(`${IDS.discord}.jsonl is missing`)
    // The dry run printed the same table.
    for (const key of Object.values(KEYS)) expect(row(dry.stdout, key)).toEqual(row(first.stdout, key))

    // A backup of the file as it was, written first.
    expect(backups(dir)).toHaveLength(1)
    expect(readFileSync(join(dir, backups(dir)[0]!))).toEqual(originalBytes)
    expect(first.stdout).toContain(`backup: ${join(dir, backups(dir)[0]!)}`)

    const after = sessionsJson(dir)
    expect(Object.keys(after).sort()).toEqual(Object.keys(originalJson).sort())
    expect(after[KEYS.main]?.compactionCount).toBe(1)
    expect(after[KEYS.dm]?.compactionCount).toBe(4)
    expect(after[KEYS.discord]?.compactionCount).toBe(2)
    expect(after[KEYS.dm]).toMatchObject({
      totalTokens: 12300,
      tokensAsOfSeq: 23,
      totalTokensFresh: true,
      contextTokens: 200000
    })
    // Every field Converge does not own, as it was.
    for (const [key, entry] of Object.entries(originalJson)) {
      for (const [field, value] of Object.entries(entry)) {
        if (!isOwnedField(field))
          expect({ key, field, value: after[key]?.[field] }).toEqual({ key, field, value })
      }
    }
    // updatedAt is activity time: reconciliation never bumps it.
    for (const key of Object.values(KEYS)) expect(after[key]?.updatedAt).toBe(originalJson[key]?.updatedAt)

    const repaired = readFileSync(join(dir, "sessions.json"))
    const second = await converge(["repair", "--json", "--sessions-dir", dir])
    expect(second.code).toBe(2)
    expect(readFileSync(join(dir, "sessions.json"))).toEqual(repaired)
    expect(backups(dir)).toHaveLength(1)
    const report = JSON.parse(second.stdout) as {
      wrote: boolean
      unfixed: number
      sessions: Array<{ sessionKey: string; before: number; after: number; changes: Array<string> }>
    }
    expect(report.wrote).toBe(false)
    expect(report.unfixed).toBe(2)
    expect(report.sessions.map((s) => [s.sessionKey, s.before, s.after, s.changes])).toEqual([
      [KEYS.discord, 2, 2, []],
      [KEYS.main, 1, 1, []],
      [KEYS.dm, 4, 4, []]
    ])
  })

  it("keeps a 0-byte sessions.json aside and rebuilds one recovered:<sessionId> entry per transcript with the folded counts", async () => {
    const dir = fixtureCopy()
    writeFileSync(join(dir, "sessions.json"), "")

    const ran = await converge(["repair", "--sessions-dir", dir])
    expect(ran.code).toBe(2)
    expect(ran.stdout).toContain("it is empty (0 bytes); moved aside to")
    const corrupt = readdirSync(dir).filter((n) => n.startsWith("sessions.json.corrupt-"))
    expect(corrupt).toHaveLength(1)
    expect(statSync(join(dir, corrupt[0]!)).size).toBe(0)
    expect(backups(dir)).toHaveLength(0)

    const after = sessionsJson(dir)
    expect(Object.keys(after).sort()).toEqual([`recovered:${IDS.main}`, `recovered:${IDS.dm}`])
    expect(after[`recovered:${IDS.main}`]).toMatchObject({
      sessionId: IDS.main,
      compactionCount: 1,
      totalTokens: 7500
    })
    expect(after[`recovered:${IDS.dm}`]).toMatchObject({
      sessionId: IDS.dm,
      compactionCount: 4,
      totalTokens: 12300
    })
    expect(row(ran.stdout, `recovered:${IDS.dm}`)?.slice(0, 4)).toEqual([
      `recovered:${IDS.dm}`,
      "—",
      "4",
      "new entry (from its transcript)"
    ])
  })

  it("keeps a value that is not a session entry as it is, repairs the others, and reports it as unfixed", async () => {
    const dir = fixtureCopy()
    const json = sessionsJson(dir)
    writeFileSync(
      join(dir, "sessions.json"),
      JSON.stringify({ ...json, "agent:main:broken": { updatedAt: 1 } }, null, 2)
    )
    const ran = await converge(["repair", "--sessions-dir", dir])
    expect(ran.code).toBe(2)
    const broken = row(ran.stdout, "agent:main:broken")
    expect(broken?.slice(0, 4)).toEqual(["agent:main:broken", "—", "—", "kept as it is"])
    expect(broken?.[4]).toContain("not a session entry")
    expect(row(ran.stdout, KEYS.dm)?.slice(0, 3)).toEqual([KEYS.dm, "0", "4"])
    const after = sessionsJson(dir)
    expect(after["agent:main:broken"]).toEqual({ updatedAt: 1 })
    expect(after[KEYS.dm]?.compactionCount).toBe(4)
    expect(Object.keys(after).sort()).toEqual([...Object.keys(json), "agent:main:broken"].sort())
  })
})
