/**
 * Runtimes sharing one PostgreSQL database (`CONVERGE_DATABASE_URL`).
 *
 * Idempotency keys shared through PostgreSQL (`CONVERGE_DATABASE_URL`): a repeat of a turn with
 * the same `Idempotency-Key`, sent to another runtime on the same database or to a runtime
 * started again, returns the first `TurnResult` and runs nothing — the transcript (rows of the
 * same database) holds the message once. Lifecycle events published by one runtime reach the
 * subscribers of the other, in order, `CompactionCompleted` once. Real database, the local model.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Effect, Exit, Redacted, Scope } from "effect"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { freshDatabase } from "../../postgres/test/db.js"
import type { LifecycleEvent } from "@converge/domain"
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

describe("a session moving between runtimes on one database", () => {
  it("is continued where the other left it: same session, its count and transcript", async () => {
    const dir = await tempDir()
    const small = { contextWindow: 2_000, reserveTokens: 500, keepRecentTokens: 200 }
    // B starts first: what A does later is not in what B loaded at its start.
    const b = await start(dir, small)
    const a = await start(dir, small)
    for (let i = 0; i < 3; i++)
      await a.turn("agent:main:moving", `message ${i}: ${"words to compact later. ".repeat(60)}`)
    const compacted = await a.compact("agent:main:moving", { waitMs: 10_000 })
    expect(compacted.state).toBe("completed")
    const before = await a.status("agent:main:moving")
    await a.dispose() // flushes its store and gives its leases back
    const next = await b.turn("agent:main:moving", "and now on b")
    expect(next.outcome).toBe("completed")
    expect(next.sessionId).toBe(before?.sessionId)
    expect(next.status.compactionCount).toBe(1)
    expect(next.status.generation).toBe(before?.generation)
    expect(await linesWith(dir, next.sessionId, "message 0")).toBe(1)
    expect(await linesWith(dir, next.sessionId, "and now on b")).toBe(1)
  })
})

describe("the other routes on a runtime that did not create the session", () => {
  it("status, compact and reset see a session another runtime created after this one started", async () => {
    const dir = await tempDir()
    const small = { contextWindow: 2_000, reserveTokens: 500, keepRecentTokens: 200 }
    const b = await start(dir, small)
    const a = await start(dir, small)
    for (let i = 0; i < 3; i++)
      await a.turn("agent:main:elsewhere", `message ${i}: ${"words to compact later. ".repeat(60)}`)
    const onA = await a.status("agent:main:elsewhere")
    expect((await b.status("agent:main:elsewhere"))?.sessionId).toBe(onA?.sessionId)
    await a.dispose() // gives its leases back
    const compacted = await b.compact("agent:main:elsewhere", { waitMs: 10_000 })
    expect(compacted.state).toBe("completed")
    expect(compacted.status.sessionId).toBe(onA?.sessionId)
    const reset = await b.reset("agent:main:elsewhere")
    expect(reset.generation).toBe((onA?.generation ?? 0) + 1)
  })
})

describe("lifecycle events across runtimes on one database", () => {
  it("a subscriber of one runtime sees the other's events, CompactionCompleted once", async () => {
    const dir = await tempDir()
    const small = { contextWindow: 2_000, reserveTokens: 500, keepRecentTokens: 200 }
    const a = await start(dir, small)
    const b = await start(dir, small)
    const seenOnB: Array<LifecycleEvent> = []
    const seenOnA: Array<LifecycleEvent> = []
    b.subscribe((e) => seenOnB.push(e))
    a.subscribe((e) => seenOnA.push(e))
    for (let i = 0; i < 3; i++) {
      const turn = await a.turn("agent:main:events", `message ${i}: ${"words to compact later. ".repeat(60)}`)
      expect(turn.outcome).toBe("completed")
    }
    const compacted = await a.compact("agent:main:events", { waitMs: 10_000 })
    expect(compacted.state).toBe("completed")
    const completedOn = (seen: ReadonlyArray<LifecycleEvent>) =>
      seen.filter((e) => e._tag === "CompactionCompleted" && e.compactionId === compacted.compactionId)
    for (let i = 0; i < 400 && completedOn(seenOnB).length === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 5))
    expect(completedOn(seenOnB)).toHaveLength(1)
    // In the order A published them (the relay adds nothing of its own).
    const tags = (seen: ReadonlyArray<LifecycleEvent>) =>
      seen.filter((e) => e.sessionKey === "agent:main:events").map((e) => e._tag)
    expect(tags(seenOnB)).toEqual(tags(seenOnA))
    // And nothing comes back to A twice.
    expect(completedOn(seenOnA)).toHaveLength(1)
  })
})
