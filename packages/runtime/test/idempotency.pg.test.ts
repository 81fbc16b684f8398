/**
 * Idempotency keys shared through PostgreSQL (`CONVERGE_DATABASE_URL`): a repeat of a turn with
 * the same `Idempotency-Key`, sent to another runtime on the same database or to a runtime
 * started again, returns the first `TurnResult` and runs nothing — the transcript (rows of the
 * same database) holds the message once. Real database, the local model.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Effect, Exit, Redacted, Scope } from "effect"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { freshDatabase } from "../../postgres/test/db.js"
import { type ConvergeRuntime, createRuntime, type RuntimeOptions } from "../src/index.js"

let scope: Scope.CloseableScope
let databaseUrl: string
const dirs: Array<string> = []
const runtimes: Array<ConvergeRuntime> = []

beforeAll(async () => {
  scope = await Effect.runPromise(Scope.make())
  databaseUrl = (await Effect.runPromise(Scope.extend(freshDatabase("converge_idem"), scope))).url
})
afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))
afterEach(async () => {
  await Promise.allSettled(runtimes.splice(0).map((rt) => rt.dispose()))
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })))
})

const tempDir = async () => {
  const dir = await mkdtemp(join(tmpdir(), "converge-idem-"))
  dirs.push(dir)
  return dir
}

const start = async (sessionsDir: string, options: RuntimeOptions = {}) => {
  const rt = await createRuntime({
    model: "local",
    localReplyMs: 5,
    flushIntervalMs: 10,
    drainTimeoutMs: 2_000,
    databaseUrl,
    sessionsDir,
    env: {},
    ...options
  })
  runtimes.push(rt)
  return rt
}

/** How many user messages of the transcript of `sessionId` (rows of the database) carry `text`. */
const linesWith = (_dir: string, sessionId: string, text: string) =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<{ n: number }>`
        SELECT count(*)::int AS n FROM converge_entries
        WHERE session_id = ${sessionId} AND entry->'message'->>'role' = 'user'
          AND strpos(entry::text, ${text}) > 0`.pipe(Effect.map((rows) => rows[0]?.n ?? 0))
    ).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(databaseUrl), maxConnections: 1 })))
  )

describe("idempotency keys in PostgreSQL", () => {
  it("a repeat sent to another runtime returns the first result and runs nothing", async () => {
    const dir = await tempDir()
    const a = await start(dir)
    const b = await start(dir)
    const first = await a.turn("agent:main:idem-a", "hello once, via a", { idempotencyKey: "k-1" })
    expect(first.outcome).toBe("completed")
    const repeat = await b.turn("agent:main:idem-a", "hello once, via a", { idempotencyKey: "k-1" })
    expect(repeat).toEqual(first)
    expect(await linesWith(dir, first.sessionId, "hello once, via a")).toBe(1)
    // The same key on another session is another turn.
    const other = await b.turn("agent:main:idem-a2", "hello once, via a", { idempotencyKey: "k-1" })
    expect(other.runId).not.toBe(first.runId)
  })

  it("a repeat after a restart returns the first result and runs nothing", async () => {
    const dir = await tempDir()
    const before = await start(dir)
    const first = await before.turn("agent:main:idem-b", "hello before the restart", {
      idempotencyKey: "k-2"
    })
    await before.dispose()
    const after = await start(dir)
    const repeat = await after.turn("agent:main:idem-b", "hello before the restart", {
      idempotencyKey: "k-2"
    })
    expect(repeat.runId).toBe(first.runId)
    expect(repeat.reply).toBe(first.reply)
    expect(await linesWith(dir, first.sessionId, "hello before the restart")).toBe(1)
    const status = await after.status("agent:main:idem-b")
    expect(status?.lastRun?.runId).toBe(first.runId)
  })

  it("a repeat sent while the first still runs elsewhere waits for its result", async () => {
    const dir = await tempDir()
    const a = await start(dir, { localReplyMs: 400 })
    const b = await start(dir)
    const first = a.turn("agent:main:idem-c", "slow hello", { idempotencyKey: "k-3" })
    // Sent once the first has claimed the key: the user message is in the transcript.
    for (let i = 0; i < 200 && (await a.status("agent:main:idem-c")) === undefined; i++)
      await new Promise((resolve) => setTimeout(resolve, 5))
    const repeat = await b.turn("agent:main:idem-c", "slow hello", { idempotencyKey: "k-3" })
    const result = await first
    expect(repeat).toEqual(result)
    expect(await linesWith(dir, result.sessionId, "slow hello")).toBe(1)
  })
})
