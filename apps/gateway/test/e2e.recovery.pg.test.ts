/**
 * S9 and S13 as real gateway processes on one PostgreSQL database: a gateway SIGKILLed after
 * the compaction entry is committed but before the store row is (S9), and two gateways
 * completing compactions at the same time (S13). The OpenClaw session they start from is
 * brought in as `converge import` does.
 */
import { execFileSync } from "node:child_process"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { Database, importSessionsFile, importTranscriptText } from "@converge/postgres"
import { Effect } from "effect"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { client, paragraph, removeTempDirs, smallWindows, tempDir, waitFor } from "./support/http.js"
import { writeOpenClawSession } from "./support/openclaw.js"
import { killAll, startGateway, stopGateway } from "./support/process.js"

const server = process.env.CONVERGE_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"
const databases: Array<string> = []
const psql = (database: string, sql: string) =>
  execFileSync("psql", [database, "-qAtc", sql], { stdio: ["ignore", "pipe", "pipe"] })
    .toString()
    .trim()
const freshDatabase = (tag: string) => {
  const name = `converge_${tag}_${process.pid}`
  psql(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  psql(server, `CREATE DATABASE ${name}`)
  databases.push(name)
  const u = new URL(server)
  u.pathname = `/${name}`
  return u.toString()
}

afterEach(killAll)
afterAll(async () => {
  await removeTempDirs()
  for (const name of databases) psql(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
})

/** Imports a directory's sessions.json and transcripts into the database at `url`. */
const importDir = (url: string, dir: string, sessionIds: ReadonlyArray<string>) =>
  Effect.runPromise(
    Effect.gen(function* () {
      const file = join(dir, "sessions.json")
      yield* importSessionsFile(url, file, yield* Effect.promise(() => readFile(file, "utf8")))
      for (const id of sessionIds)
        yield* importTranscriptText(
          url,
          id,
          yield* Effect.promise(() => readFile(join(dir, `${id}.jsonl`), "utf8"))
        )
    }).pipe(Effect.provide(Database.layer({ url, maxConnections: 1 })))
  )

interface Status {
  readonly sessionId: string
  readonly compactionCount: number
  readonly lastCompaction?: {
    readonly compactionId: string
    readonly ordinal: number
    readonly tokensAfter?: number
  }
  readonly tokens: { readonly context: number | null; readonly fresh: boolean; readonly asOfSeq: number }
}

describe("gateway processes on one PostgreSQL database", { timeout: 60_000 }, () => {
  it("S9: SIGKILLed after the compaction entry is committed, before the store row; another gateway counts it once", async () => {
    const url = freshDatabase("s9")
    const dir = await tempDir()
    const sessionId = await writeOpenClawSession(dir, "s9")
    await importDir(url, dir, [sessionId])
    const env = { ...smallWindows, CONVERGE_DATABASE_URL: url, CONVERGE_LEASE_MS: "1000" }
    const first = await startGateway({
      ...env,
      CONVERGE_SESSIONS_DIR: await tempDir(),
      CONVERGE_LOCAL_SUMMARY_MS: "200",
      // The store does not flush while this gateway lives.
      CONVERGE_FLUSH_INTERVAL_MS: "2147483647"
    })
    const pending = await client(first.url).post<{ state: string; compactionId: string }>(
      "/v1/sessions/s9/compact",
      { waitMs: 0 }
    )
    expect(pending.body.state).toBe("pending")
    const entry = await waitFor(() => {
      const row = psql(
        url,
        `SELECT seq || ' ' || entry::text FROM converge_entries WHERE session_id = '${sessionId}' AND compaction_id IS NOT NULL`
      )
      if (row === "") return undefined
      const cut = row.indexOf(" ")
      return {
        seq: Number(row.slice(0, cut)),
        ...(JSON.parse(row.slice(cut + 1)) as { compactionId: string; tokensAfter: number })
      }
    }, 15_000)
    first.child.kill("SIGKILL")
    expect((await first.exited).signal).toBe("SIGKILL")
    expect(entry.compactionId).toBe(pending.body.compactionId)
    // The row is the stale one: the compaction is only in the transcript.
    expect(
      psql(url, "SELECT coalesce(compaction_count, 0) FROM converge_sessions WHERE session_key = 's9'")
    ).toBe("0")

    const second = await startGateway({
      ...env,
      CONVERGE_SESSIONS_DIR: await tempDir(),
      CONVERGE_FLUSH_INTERVAL_MS: "20"
    })
    const c = client(second.url)
    const status = await c.get<Status>("/v1/sessions/s9/status")
    expect(status.status).toBe(200)
    expect(status.body).toMatchObject({
      sessionId,
      compactionCount: 1,
      lastCompaction: { compactionId: pending.body.compactionId, ordinal: 1, tokensAfter: entry.tokensAfter },
      tokens: { context: entry.tokensAfter, fresh: true, asOfSeq: entry.seq }
    })
    // The dead gateway's lease lapses; the next turn takes it over and counts nothing twice.
    const turn = await waitFor(async () => {
      const r = await c.post<{ outcome: string; status: Status }>("/v1/sessions/s9/turns", {
        message: "still there?"
      })
      return r.status === 200 ? r.body : undefined
    }, 15_000)
    expect(turn.outcome).toBe("completed")
    expect(turn.status.compactionCount).toBe(1)
    expect((await stopGateway(second)).code).toBe(0)
    expect(psql(url, "SELECT compaction_count FROM converge_sessions WHERE session_key = 's9'")).toBe("1")
    // The fields Converge does not own came through untouched.
    expect(
      JSON.parse(psql(url, "SELECT unowned::text FROM converge_sessions WHERE session_key = 's9'"))
    ).toMatchObject({
      model: "claude-sonnet-4-5",
      deliveryContext: { channel: "telegram", to: "user:4242" }
    })
  })

  it("S13: two gateways complete compactions at the same time; every row ends with the join", async () => {
    const url = freshDatabase("s13")
    const seed = await tempDir()
    const kept = await writeOpenClawSession(seed, "kept:by-openclaw")
    await importDir(url, seed, [kept])
    const env = {
      ...smallWindows,
      CONVERGE_DATABASE_URL: url,
      CONVERGE_LOCAL_REPLY_MS: "5",
      CONVERGE_LOCAL_SUMMARY_MS: "300",
      CONVERGE_FLUSH_INTERVAL_MS: "5"
    }
    const [a, b] = await Promise.all([
      startGateway({ ...env, CONVERGE_SESSIONS_DIR: await tempDir() }),
      startGateway({ ...env, CONVERGE_SESSIONS_DIR: await tempDir() })
    ])
    const work = [
      { c: client(a.url), key: "a1" },
      { c: client(a.url), key: "a2" },
      { c: client(b.url), key: "b1" },
      { c: client(b.url), key: "b2" }
    ]
    await Promise.all(
      work.map(async ({ c, key }) => {
        for (let i = 0; i < 3; i++) {
          const turn = await c.post<{ outcome: string }>(`/v1/sessions/${key}/turns`, {
            message: paragraph(i)
          })
          expect(turn.body.outcome).toBe("completed")
        }
      })
    )
    const compacted = await Promise.all(
      work.map(({ c, key }) =>
        c.post<{ state: string; compactionId: string }>(`/v1/sessions/${key}/compact`, { waitMs: 20_000 })
      )
    )
    expect(compacted.map((r) => r.body.state)).toEqual(["completed", "completed", "completed", "completed"])
    const [exitA, exitB] = await Promise.all([stopGateway(a), stopGateway(b)])
    expect([exitA.code, exitB.code]).toEqual([0, 0])
    for (const [i, { key }] of work.entries()) {
      const row = psql(
        url,
        `SELECT compaction_count || ' ' || (last_compaction->>'compactionId') FROM converge_sessions WHERE session_key = '${key}'`
      )
      expect(row, key).toBe(`1 ${compacted[i]!.body.compactionId}`)
    }
    expect(
      psql(
        url,
        "SELECT session_id || ' ' || coalesce(compaction_count, 0) FROM converge_sessions WHERE session_key = 'kept:by-openclaw'"
      )
    ).toBe(`${kept} 0`)
  })
})
