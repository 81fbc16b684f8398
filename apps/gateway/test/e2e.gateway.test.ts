/**
 * End-to-end: the real gateway process (`dist/main.js`) on a free loopback port, with a
 * token, the local model's latencies set so the stories of SCENARIOS.md happen in real time.
 * One process serves the tests of this file (each on its own session); the last test stops
 * it with SIGTERM.
 */
import { readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type GatewayProcess, killAll, startGateway } from "./support/process.js"
import {
  client,
  dataOf,
  paragraph,
  removeTempDirs,
  smallWindows,
  tempDir,
  transcript,
  waitFor
} from "./support/http.js"

const TOKEN = "e2e-secret-token"
const SUMMARY_MS = 1_500
const DRAIN_MS = 500

interface Status {
  readonly sessionId: string
  readonly compactionCount: number
  readonly compaction: { readonly state: string; readonly compactionId?: string }
  readonly lastCompaction?: {
    readonly compactionId: string
    readonly ordinal: number
    readonly tokensAfter?: number
  }
  readonly tokens: { readonly context: number | null; readonly fresh: boolean; readonly asOfSeq: number }
}
interface TurnResult {
  readonly runId: string
  readonly sessionId: string
  readonly outcome: string
  readonly timeout?: string
  readonly compaction: { readonly state: string; readonly compactionId?: string }
  readonly status: Status
}

let dir: string
let gateway: GatewayProcess
let c: ReturnType<typeof client>

beforeAll(async () => {
  dir = await tempDir()
  // Entries no one can serve: a sessionId that would escape the directory, and a value that
  // is not a session entry at all (written by hand, say).
  await writeFile(
    join(dir, "sessions.json"),
    JSON.stringify({
      evil: { sessionId: "../../evil", updatedAt: 1, compactionCount: 2 },
      broken: { sessionId: 42, note: ["by hand"] }
    })
  )
  gateway = await startGateway({
    ...smallWindows,
    CONVERGE_SESSIONS_DIR: dir,
    CONVERGE_TOKEN: TOKEN,
    CONVERGE_LOCAL_REPLY_MS: "250",
    CONVERGE_LOCAL_SUMMARY_MS: String(SUMMARY_MS),
    CONVERGE_DRAIN_TIMEOUT_MS: String(DRAIN_MS),
    CONVERGE_FLUSH_INTERVAL_MS: "20"
  })
  c = client(gateway.url, TOKEN)
}, 60_000)

afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

/** Three long turns: the next long message crosses the threshold. */
const fill = async (key: string) => {
  for (let i = 0; i < 3; i++) {
    const answer = await c.post<TurnResult>(`/v1/sessions/${key}/turns`, { message: paragraph(i) })
    expect(answer.status).toBe(200)
    expect(answer.body.outcome).toBe("completed")
  }
}

const status = (key: string) => c.get<Status>(`/v1/sessions/${key}/status`)

describe("gateway process", { timeout: 30_000 }, () => {
  it("S1: the turn times out with its compaction pending; /status converges and one CompactionCompleted is published", async () => {
    const events = await c.events("?session=s1")
    await fill("s1")
    const sent = Date.now()
    const turn = await c.post<TurnResult>("/v1/sessions/s1/turns", { message: paragraph(9), timeoutMs: 400 })
    const elapsed = Date.now() - sent
    expect(turn.status).toBe(200)
    expect(turn.body).toMatchObject({
      outcome: "timed_out",
      timeout: "turn",
      compaction: { state: "pending" }
    })
    expect(elapsed).toBeLessThan(SUMMARY_MS)
    expect(turn.body.status.compactionCount).toBe(0)
    const compactionId = turn.body.compaction.compactionId
    expect(compactionId).toMatch(/^cmp_/)

    const converged = await waitFor(async () => {
      const s = await status("s1")
      return s.body.compactionCount === 1 ? s.body : undefined
    })
    const lines = await transcript(dir, turn.body.sessionId)
    const compactions = lines.filter((line) => line.type === "compaction")
    expect(compactions).toHaveLength(1)
    const entry = compactions[0]!
    expect(converged.compaction.state).toBe("idle")
    expect(converged.lastCompaction).toMatchObject({
      compactionId,
      ordinal: 1,
      tokensAfter: entry.tokensAfter
    })
    expect(converged.tokens).toMatchObject({ context: entry.tokensAfter, fresh: true, asOfSeq: entry.seq })

    await events.waitFor((es) => es.some((e) => e.event === "CompactionCompleted"))
    const completed = dataOf(events.events, "CompactionCompleted")
    expect(completed).toHaveLength(1)
    expect(completed[0]).toMatchObject({
      _tag: "CompactionCompleted",
      sessionKey: "s1",
      compactionId,
      ordinal: 1,
      seq: entry.seq
    })
    expect(events.events.every((e) => JSON.parse(e.data ?? "{}").sessionKey === "s1")).toBe(true)
    events.close()
  })

  it("S19: the same turn twice with one Idempotency-Key, the second while the first runs, runs once", async () => {
    const events = await c.events("?session=s19")
    const headers = { "idempotency-key": "retry-43661" }
    let firstAnswered = Number.POSITIVE_INFINITY
    const first = c
      .post<TurnResult>("/v1/sessions/s19/turns", { message: "deliver me once" }, headers)
      .then((a) => {
        firstAnswered = Date.now()
        return a
      })
    await new Promise((r) => setTimeout(r, 60))
    const secondSent = Date.now()
    const second = c.post<TurnResult>("/v1/sessions/s19/turns", { message: "deliver me once" }, headers)
    const [a, b] = await Promise.all([first, second])
    // The repeat was sent while the first still ran (the reply takes 250 ms).
    expect(secondSent).toBeLessThan(firstAnswered)
    expect(a.status).toBe(200)
    expect(b.status).toBe(200)
    expect(b.body).toEqual(a.body)
    expect(a.body.outcome).toBe("completed")
    const third = await c.post<TurnResult>("/v1/sessions/s19/turns", { message: "deliver me once" }, headers)
    expect(third.body).toEqual(a.body)

    const messages = (await transcript(dir, a.body.sessionId)).filter((line) => line.type === "message")
    expect(messages.map((m) => (m.message as { role: string }).role)).toEqual(["user", "assistant"])
    await events.waitFor((es) => es.some((e) => e.event === "TurnFinished"))
    expect(dataOf(events.events, "TurnStarted")).toHaveLength(1)
    events.close()

    const other = await c.post<TurnResult>(
      "/v1/sessions/s19/turns",
      { message: "deliver me once" },
      { "idempotency-key": "another" }
    )
    expect(other.body.runId).not.toBe(a.body.runId)
  })

  it("a client that disconnects does not cancel the compaction it started", async () => {
    await fill("disc")
    const controller = new AbortController()
    const request = c.request("POST", "/v1/sessions/disc/compact", { waitMs: 60_000 }, {}, controller.signal)
    const running = await waitFor(async () => {
      const s = await status("disc")
      return s.body.compaction.state === "running" ? s.body : undefined
    })
    controller.abort()
    await expect(request).rejects.toThrow()
    const done = await waitFor(async () => {
      const s = await status("disc")
      return s.body.compactionCount === 1 ? s.body : undefined
    })
    expect(done.lastCompaction?.compactionId).toBe(running.compaction.compactionId)
  })

  it("bad input gets its status code and a message; the gateway stays up", async () => {
    const cases: Array<[string, Promise<{ status: number; body: unknown }>, number, string | RegExp]> = [
      [
        "malformed JSON",
        c.post("/v1/sessions/bad/turns", '{"message": "unterminated'),
        400,
        /not valid JSON/
      ],
      [
        "wrong type",
        c.post("/v1/sessions/bad/turns", { message: 5 }),
        400,
        "message: Expected string, actual 5"
      ],
      ["missing field", c.post("/v1/sessions/bad/turns", {}), 400, /message: is missing/],
      ["empty message", c.post("/v1/sessions/bad/turns", { message: "" }), 400, /message/],
      [
        "timeout out of range",
        c.post("/v1/sessions/bad/turns", { message: "hi", timeoutMs: 0 }),
        400,
        "timeoutMs: Expected a number between 1 and 86400000, actual 0"
      ],
      ["not an object", c.post("/v1/sessions/bad/turns", "[1,2]"), 400, /TurnRequest/],
      ["negative waitMs", c.post("/v1/sessions/s1/compact", { waitMs: -1 }), 400, /waitMs/],
      [
        "over-long key",
        c.post(`/v1/sessions/${"k".repeat(257)}/turns`, { message: "hi" }),
        400,
        /at most 256/
      ],
      ["bad key character", c.get("/v1/sessions/a%20b/status"), 400, /only A-Z a-z 0-9/],
      [
        "over-long Idempotency-Key",
        c.post("/v1/sessions/bad/turns", { message: "hi" }, { "idempotency-key": "x".repeat(300) }),
        400,
        /Idempotency-Key is 300 characters long/
      ],
      [
        "2 MiB body",
        c.post("/v1/sessions/bad/turns", JSON.stringify({ message: "x".repeat(2 * 1024 * 1024) })),
        413,
        /at most 1048576 bytes/
      ],
      ["unknown session", c.get("/v1/sessions/nobody/status"), 404, /nobody/],
      ["unknown route", c.get("/v1/nothing-here"), 404, /no route for GET \/v1\/nothing-here/],
      ["no token", client(gateway.url).get("/v1/sessions"), 401, /Bearer/],
      ["wrong token", client(gateway.url, "not-the-token").get("/v1/sessions"), 401, /not valid/],
      ["no token for the docs", client(gateway.url).get("/openapi.json"), 401, /Bearer/]
    ]
    for (const [name, answer, code, message] of cases) {
      const { status: got, body } = await answer
      expect({ name, status: got }).toEqual({ name, status: code })
      expect(body).toMatchObject({ _tag: expect.any(String), message: expect.any(String) })
      const text = (body as { message: string }).message
      if (typeof message === "string") expect(text, name).toBe(message)
      else expect(text, name).toMatch(message)
    }
    expect((await client(gateway.url).get("/healthz")).body).toEqual({ ok: true })
    expect(gateway.child.exitCode).toBeNull()
    expect((await status("s1")).status).toBe(200)
  })

  it("an entry on disk that cannot be served gets 422, is reported at start-up, and stops nothing", async () => {
    for (const key of ["evil", "broken"]) {
      for (const answer of [
        await status(key),
        await c.post(`/v1/sessions/${key}/turns`, { message: "hi" }),
        await c.post(`/v1/sessions/${key}/compact`, {})
      ]) {
        expect(answer.status).toBe(422)
        expect(answer.body).toMatchObject({
          _tag: "SessionUnavailable",
          message: expect.stringContaining(key)
        })
      }
      const report = gateway.logs.find((line) => line.sessionKey === key && line.level === "WARN")
      expect(report?.message).toMatch(/cannot be served/)
    }
    const list = await c.get<{ sessions: Array<{ sessionKey: string }> }>("/v1/sessions")
    expect(list.body.sessions.map((s) => s.sessionKey)).not.toContain("evil")
    expect(list.body.sessions.map((s) => s.sessionKey)).not.toContain("broken")
  })

  it("logs one JSON object per line, with session key, run id and compaction id", async () => {
    expect(gateway.logs.every((line) => !("raw" in line))).toBe(true)
    const s1 = gateway.logs.filter((line) => line.sessionKey === "s1")
    expect(s1.some((line) => typeof line.runId === "string" && line.event === "TurnFinished")).toBe(true)
    expect(
      s1.some((line) => typeof line.compactionId === "string" && line.event === "CompactionCompleted")
    ).toBe(true)
    expect(s1.some((line) => line.message === "POST /v1/sessions/s1/turns 200")).toBe(true)
  })

  it("SIGTERM: 503 while draining, the running compaction interrupted at drainTimeoutMs, flush, exit 0", async () => {
    await fill("drain")
    const pending = await c.post<{ state: string; status: Status }>("/v1/sessions/drain/compact", {
      waitMs: 0
    })
    expect(pending.body.state).toBe("pending")
    const events = await c.events()
    const signalled = Date.now()
    gateway.child.kill("SIGTERM")
    await waitFor(() =>
      gateway.logs.some((l) => l.message?.toString().startsWith("shutting down")) ? true : undefined
    )
    const refused = await c.get("/v1/sessions")
    expect(refused.status).toBe(503)
    expect(refused.body).toMatchObject({ _tag: "ShuttingDown" })
    const { code } = await gateway.exited
    const elapsed = Date.now() - signalled
    expect(code).toBe(0)
    expect(elapsed).toBeGreaterThanOrEqual(DRAIN_MS)
    // drainTimeoutMs plus one flush, plus the process's own exit on a loaded machine.
    expect(elapsed).toBeLessThan(DRAIN_MS + 4_000)
    await events.ended
    expect(dataOf(events.events, "CompactionFailed")).toEqual([
      expect.objectContaining({ sessionKey: "drain", reason: "shutdown" })
    ])
    const lines = await transcript(dir, pending.body.status.sessionId)
    expect(lines.some((line) => line.type === "compaction")).toBe(false)
    const file = JSON.parse(await readFile(join(dir, "sessions.json"), "utf8")) as Record<
      string,
      { compactionCount?: number }
    >
    expect(file.s1?.compactionCount).toBe(1)
    expect(file.disc?.compactionCount).toBe(1)
    expect(file.drain?.compactionCount).toBe(0)
    expect(file.evil).toMatchObject({ sessionId: "../../evil", compactionCount: 2 })
    expect(file.broken).toEqual({ sessionId: 42, note: ["by hand"] })
  })
})
