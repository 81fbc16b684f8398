/**
 * End-to-end, several real gateway processes on one sessions directory: a gateway killed
 * with SIGKILL between the compaction's append and the store's flush (S9), and two gateways
 * sharing a directory (S13).
 */
import { readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { writeOpenClawSession } from "./support/openclaw.js"
import { killAll, startGateway, stopGateway } from "./support/process.js"
import {
  client,
  paragraph,
  removeTempDirs,
  smallWindows,
  tempDir,
  transcript,
  waitFor
} from "./support/http.js"

afterEach(killAll)
afterAll(removeTempDirs)

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

type SessionsFile = Record<
  string,
  Record<string, unknown> & { compactionCount?: number; lastCompaction?: { compactionId: string } }
>

const readSessions = async (dir: string) =>
  JSON.parse(await readFile(join(dir, "sessions.json"), "utf8")) as SessionsFile

describe("gateway processes on one sessions directory", { timeout: 60_000 }, () => {
  it("S9: killed with SIGKILL after the compaction entry is durable but before the flush; a new gateway counts it once, with its tokens", async () => {
    const dir = await tempDir()
    const sessionId = await writeOpenClawSession(dir, "s9")
    const before = await readFile(join(dir, "sessions.json"), "utf8")
    const first = await startGateway({
      ...smallWindows,
      CONVERGE_SESSIONS_DIR: dir,
      CONVERGE_LOCAL_SUMMARY_MS: "200",
      // The store does not flush while this gateway lives.
      CONVERGE_FLUSH_INTERVAL_MS: "2147483647"
    })
    const pending = await client(first.url).post<{ state: string; compactionId: string }>(
      "/v1/sessions/s9/compact",
      {
        waitMs: 0
      }
    )
    expect(pending.body.state).toBe("pending")
    const entry = await waitFor(
      async () => (await transcript(dir, sessionId)).find((line) => line.type === "compaction"),
      15_000
    )
    first.child.kill("SIGKILL")
    expect((await first.exited).signal).toBe("SIGKILL")
    expect(entry.compactionId).toBe(pending.body.compactionId)
    // The store on disk is the stale one: the compaction is only in the transcript.
    expect(await readFile(join(dir, "sessions.json"), "utf8")).toBe(before)

    const second = await startGateway({
      ...smallWindows,
      CONVERGE_SESSIONS_DIR: dir,
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
    // The dead process's lease is taken over; a turn counts nothing twice.
    const turn = await c.post<{ outcome: string; status: Status }>("/v1/sessions/s9/turns", {
      message: "still there?"
    })
    expect(turn.body.outcome).toBe("completed")
    expect(turn.body.status.compactionCount).toBe(1)
    expect((await stopGateway(second)).code).toBe(0)
    const file = await readSessions(dir)
    expect(file.s9).toMatchObject({
      sessionId,
      compactionCount: 1,
      lastCompaction: { compactionId: pending.body.compactionId },
      model: "claude-sonnet-4-5",
      deliveryContext: { channel: "telegram", to: "user:4242" }
    })
  })

  it("S13: two gateways on one directory complete compactions at the same time; sessions.json ends with the join", async () => {
    const dir = await tempDir()
    await writeFile(
      join(dir, "sessions.json"),
      JSON.stringify({ "kept:by-openclaw": { sessionId: "not-ours", updatedAt: 7, compactionCount: 3 } })
    )
    const env = {
      ...smallWindows,
      CONVERGE_SESSIONS_DIR: dir,
      CONVERGE_LOCAL_REPLY_MS: "5",
      CONVERGE_LOCAL_SUMMARY_MS: "300",
      CONVERGE_FLUSH_INTERVAL_MS: "5"
    }
    const [a, b] = await Promise.all([startGateway(env), startGateway(env)])
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

    const file = await readSessions(dir)
    for (const [i, { key }] of work.entries()) {
      expect(file[key], key).toMatchObject({
        compactionCount: 1,
        lastCompaction: { compactionId: compacted[i]!.body.compactionId }
      })
    }
    expect(file["kept:by-openclaw"]).toMatchObject({ sessionId: "not-ours", compactionCount: 3 })
  })
})
