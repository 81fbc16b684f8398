/**
 * The database goes away under load and comes back. A PostgreSQL server of the test's own (a
 * fresh cluster on another port, so the machine's server and the tests using it are not
 * touched) is stopped for 5 s while clients send turns to a gateway on it, then started again.
 * While it is away turns answer 503 with Retry-After (or a `failed` result naming the
 * database), never 500; once it is back the gateway serves again by itself, and every turn
 * answered `completed` — before, during or after — has its user message and reply in the
 * transcript exactly once.
 */
import { execFileSync } from "node:child_process"
import { randomUUID } from "node:crypto"
import { chownSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { client, paragraph } from "./support/http.js"
import { killAll, startGateway, stopGateway } from "./support/process.js"

const BIN = (() => {
  for (const v of ["17", "16", "15", "14"]) {
    try {
      execFileSync(`/usr/lib/postgresql/${v}/bin/pg_ctl`, ["--version"], { stdio: "ignore" })
      return `/usr/lib/postgresql/${v}/bin`
    } catch {
      // not this version
    }
  }
  return ""
})()
const PORT = 20_000 + (process.pid % 20_000)
const root = mkdtempSync(join(tmpdir(), "converge-pgfault-"))
const data = join(root, "data")
const url = `postgres://postgres@127.0.0.1:${PORT}/postgres`

/** Runs a server binary as the `postgres` user when this is root (initdb refuses root). */
const asPostgres = (bin: string, args: Array<string>) => {
  const root = process.getuid?.() === 0
  const [cmd, argv] = root
    ? ["runuser", ["-u", "postgres", "--", join(BIN, bin), ...args]]
    : [join(BIN, bin), args]
  return execFileSync(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] }).toString()
}
const pgCtl = (action: "start" | "stop") =>
  action === "start"
    ? asPostgres("pg_ctl", [
        "-D",
        data,
        "-o",
        `-p ${PORT} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off`,
        "-l",
        join(root, "log"),
        "-w",
        "start"
      ])
    : asPostgres("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"])
const psql = (sql: string) =>
  execFileSync("psql", [url, "-qAtc", sql], {
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 256 * 1024 * 1024
  }).toString()

afterEach(killAll)
afterAll(() => {
  try {
    pgCtl("stop")
  } catch {
    // already stopped
  }
  rmSync(root, { recursive: true, force: true })
})

describe("the database stopped for 5 s under load", () => {
  it("answers 503 while it is away, never 500, and loses no acknowledged turn", async () => {
    expect(BIN, "PostgreSQL's server binaries (pg_ctl, initdb) are installed").not.toBe("")
    if (process.getuid?.() === 0)
      chownSync(root, Number(execFileSync("id", ["-u", "postgres"]).toString()), 0)
    asPostgres("initdb", ["-D", data, "-A", "trust", "-U", "postgres"])
    pgCtl("start")
    const gateway = await startGateway({
      CONVERGE_DATABASE_URL: url,
      CONVERGE_SESSIONS_DIR: join(root, "sessions"),
      CONVERGE_LOCAL_REPLY_MS: "20",
      CONVERGE_FLUSH_INTERVAL_MS: "20"
    })
    const c = client(gateway.url)
    const statuses: Record<string, number> = {}
    const completed: Array<{ sessionId: string; message: string; reply: string }> = []
    const retryAfter = new Set<string | null>()
    const errors: Array<string> = []
    let phase: "before" | "away" | "back" = "before"
    const byPhase: Record<string, Record<string, number>> = { before: {}, away: {}, back: {} }
    // By the phase in which a request was sent (the phase above counts answers as they come).
    const sentAway: Record<string, number> = {}
    const startedAt = Date.now()
    const send = async (session: string, message: string) => {
      const sentIn = phase
      const answer = await c.post<{ outcome: string; sessionId: string; reply?: string }>(
        `/v1/sessions/${session}/turns`,
        { message }
      )
      const key = `${answer.status}${answer.status === 200 ? `:${answer.body.outcome}` : ""}`
      statuses[key] = (statuses[key] ?? 0) + 1
      byPhase[phase]![key] = (byPhase[phase]![key] ?? 0) + 1
      if (sentIn === "away") sentAway[key] = (sentAway[key] ?? 0) + 1
      if (answer.status === 503) retryAfter.add(answer.headers.get("retry-after"))
      if (answer.status >= 500 && answer.status !== 503)
        errors.push(JSON.stringify(answer.body).slice(0, 300))
      if (answer.status === 200 && answer.body.outcome === "completed" && answer.body.reply !== undefined)
        completed.push({ sessionId: answer.body.sessionId, message, reply: answer.body.reply })
    }
    const worker = async (w: number) => {
      for (let n = 0; Date.now() - startedAt < 14_000; n++) {
        await send(`agent:main:f${w}`, `m-${w}-${n}-${randomUUID()} ${paragraph(n).slice(0, 200)}`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    }
    // New requests through the outage, each on its own: the workers' requests sent as the
    // database went away wait in the cluster for it (they are stored and run once it is back),
    // and on a loaded machine all four may be waiting for the whole outage.
    const arrivals: Array<Promise<void>> = []
    const arrivalsDuringOutage = async () => {
      while (phase !== "back") {
        if (phase === "away") arrivals.push(send(`agent:main:a${arrivals.length}`, `a-${randomUUID()}`))
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    const outage = async () => {
      await new Promise((resolve) => setTimeout(resolve, 3_000))
      pgCtl("stop")
      phase = "away"
      await new Promise((resolve) => setTimeout(resolve, 5_000))
      pgCtl("start")
      phase = "back"
    }
    await Promise.all([outage(), arrivalsDuringOutage(), ...Array.from({ length: 4 }, (_, w) => worker(w))])
    await Promise.all(arrivals)
    console.log(
      `database fault: answers by phase ${JSON.stringify(byPhase)}; sent while away ${JSON.stringify(sentAway)}`
    )
    if (errors.length > 0)
      console.log(
        `database fault: errors ${errors.join("\n")}\n${gateway.logs
          .filter((l) => l.status === 500 || (l.level !== "INFO" && l.level !== "DEBUG"))
          .map((l) => JSON.stringify(l).slice(0, 1500))
          .join("\n")}`
      )
    expect(Object.keys(statuses).filter((k) => k.startsWith("5") && !k.startsWith("503"))).toEqual([])
    // Requests sent while the database is away are refused with 503 (once the router's probe
    // has seen it go).
    expect(sentAway["503"] ?? 0).toBeGreaterThan(0)
    expect([...retryAfter].every((v) => v !== null && Number(v) >= 1)).toBe(true)
    // Back by itself: the last second of the run was served.
    expect(byPhase.back!["200:completed"] ?? 0).toBeGreaterThan(0)

    await stopGateway(gateway)
    const rows = psql("SELECT entry::text FROM converge_entries WHERE entry->>'type' = 'message'").split("\n")
    for (const turn of completed) {
      const tag = turn.message.slice(0, 60)
      const user = rows.filter((l) => l.includes('"role":"user"') && l.includes(tag))
      const reply = rows.filter(
        (l) => l.includes('"role":"assistant"') && l.includes(JSON.stringify(turn.reply).slice(1, -1))
      )
      expect(user, "the user message of an acknowledged turn").toHaveLength(1)
      expect(reply, "the reply of an acknowledged turn").toHaveLength(1)
    }
  }, 90_000)
})
