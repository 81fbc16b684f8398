/**
 * `converge import` and `converge export` as a person runs them: the built binary, a copy of
 * the fixture directory (sessions.json and transcripts) and a fresh database on the machine's
 * PostgreSQL.
 */
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cleanup, converge, fixtureCopy, sessionsJson, snapshot, tempDir } from "./helpers.js"

const server = process.env.CONVERGE_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"
const name = `converge_cli_${process.pid}`
const url = (() => {
  const u = new URL(server)
  u.pathname = `/${name}`
  return u.toString()
})()
const psql = (sql: string) => execFileSync("psql", [server, "-qc", sql], { stdio: "pipe" })

beforeAll(() => {
  psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  psql(`CREATE DATABASE ${name}`)
})
afterAll(() => {
  psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  cleanup()
})

describe("converge import | export", () => {
  it("imports the fixture, a second import changes nothing, export writes the same entries", async () => {
    const dir = fixtureCopy()
    const before = snapshot(dir)
    const first = await converge(["import", "--sessions-dir", dir], { CONVERGE_DATABASE_URL: url })
    expect(first.stderr).toBe("")
    expect(first.code).toBe(0)
    const entries = Object.keys(sessionsJson(dir)).length
    expect(first.stdout).toContain(`${entries} entries merged, ${entries} rows changed`)
    const transcripts = readdirSync(dir).filter((n) => n.endsWith(".jsonl"))
    expect(first.stdout).toContain(`${transcripts.length} transcripts`)
    const second = await converge(["import", "--sessions-dir", dir, "--json"], { CONVERGE_DATABASE_URL: url })
    expect(JSON.parse(second.stdout)).toMatchObject({
      merged: entries,
      changed: 0,
      transcripts: transcripts.length,
      entries: 0
    })
    // Import reads the directory; it writes nothing there.
    expect(snapshot(dir)).toEqual(before)

    const out = tempDir()
    const exported = await converge(["export", "--sessions-dir", out, "--database-url", url])
    expect(exported.code).toBe(0)
    expect(exported.stdout).toContain(`exported ${entries} sessions to ${join(out, "sessions.json")}`)
    const original = sessionsJson(dir)
    const written = sessionsJson(out)
    expect(Object.keys(written).sort()).toEqual(Object.keys(original).sort())
    for (const [key, entry] of Object.entries(original))
      expect(written[key]).toMatchObject({ sessionId: entry.sessionId })
    // Each transcript comes out as it went in, line for line (a torn last line is not an entry).
    for (const name of transcripts) {
      const text = readFileSync(join(dir, name), "utf8")
      expect(readFileSync(join(out, name), "utf8")).toBe(text.slice(0, text.lastIndexOf("\n") + 1))
    }

    // An existing sessions.json is never replaced.
    const again = await converge(["export", "--sessions-dir", out], { CONVERGE_DATABASE_URL: url })
    expect(again.code).toBe(1)
    expect(again.stderr).toContain(`${join(out, "sessions.json")} exists`)
  }, 60_000)

  it("a database that cannot be reached is one line naming the URL, its password masked", async () => {
    const r = await converge(["import", "--sessions-dir", fixtureCopy()], {
      CONVERGE_DATABASE_URL: "postgres://converge:s3cret@127.0.0.1:1/nowhere"
    })
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toContain("postgres://converge:***@127.0.0.1:1/nowhere")
    expect(r.stderr).not.toContain("s3cret")
  }, 60_000)

  it("without a database it says which variable to set", async () => {
    const r = await converge(["export", "--sessions-dir", tempDir()], { CONVERGE_DATABASE_URL: "" })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("set CONVERGE_DATABASE_URL")
  })
})
