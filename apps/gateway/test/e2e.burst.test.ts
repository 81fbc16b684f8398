/**
 * End-to-end overload: the real gateway process, a burst of thousands of turns sent at once,
 * each on its own TCP connection. Every request gets an answer — 200 with a `TurnResult`, or
 * 503 `Overloaded` with `Retry-After` — never a 500, a reset or silence. No time is asserted:
 * the real-time figures are the bench's (`runner.bench.mjs`, overload rows).
 */
import { request } from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { removeTempDirs, tempDir } from "./support/http.js"
import { type GatewayProcess, killAll, startGateway } from "./support/process.js"

const BURST = 3000
const SESSIONS = 1000
const MAX_TURNS = 200

interface Reply {
  readonly status: number
  readonly retryAfter: string | undefined
  readonly body: Record<string, unknown>
}

/** One POST on a connection of its own (no agent pooling: the burst reaches the listen queue). */
const post = (url: URL, path: string, body: unknown) =>
  new Promise<Reply>((resolve, reject) => {
    const payload = JSON.stringify(body)
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path,
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }
      },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("error", reject)
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8")
          let parsed: Record<string, unknown>
          try {
            parsed = JSON.parse(text) as Record<string, unknown>
          } catch {
            parsed = { text }
          }
          const retryAfter = res.headers["retry-after"]
          resolve({ status: res.statusCode ?? 0, retryAfter: retryAfter, body: parsed })
        })
      }
    )
    req.on("error", reject)
    req.end(payload)
  })

let gateway: GatewayProcess

beforeAll(async () => {
  gateway = await startGateway({
    CONVERGE_SESSIONS_DIR: await tempDir(),
    CONVERGE_LOCAL_REPLY_MS: "20",
    CONVERGE_MAX_TURNS: String(MAX_TURNS),
    CONVERGE_TURN_TIMEOUT_MS: "5000"
  })
}, 60_000)

afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

describe("a burst of turns beyond what the gateway can take", () => {
  it(`${BURST} concurrent turns over ${SESSIONS} sessions: each answered 200 or 503 with Retry-After`, async () => {
    const url = new URL(gateway.url)
    const settled = await Promise.allSettled(
      Array.from({ length: BURST }, (_, i) =>
        post(url, `/v1/sessions/burst-${i % SESSIONS}/turns`, { message: `turn ${i}` })
      )
    )
    const failures = settled.flatMap((s) => (s.status === "rejected" ? [String(s.reason)] : []))
    // No connection was reset or left unanswered.
    expect(failures.slice(0, 5)).toEqual([])
    const replies = settled.flatMap((s, i) =>
      s.status === "fulfilled" ? [{ ...s.value, key: `burst-${i % SESSIONS}` }] : []
    )
    const byStatus = new Map<number, number>()
    for (const r of replies) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1)
    expect([...byStatus.keys()].sort()).toEqual([200, 503])
    for (const r of replies) {
      if (r.status === 200) {
        // An admitted turn keeps its timeout contract: on a machine busy with the other test
        // files it may end timed_out, which is an answer too.
        expect(["completed", "timed_out"]).toContain(r.body.outcome)
      } else {
        expect(
          r.body._tag,
          `${r.status} ${JSON.stringify(r.body)}\n${gateway.logs
            .filter((l) => l.sessionKey === r.key || l.level === "ERROR" || l.level === "WARN")
            .slice(0, 12)
            .map((l) => JSON.stringify(l))
            .join("\n")}`
        ).toBe("Overloaded")
        expect(r.body.retryAfterMs).toBeGreaterThan(0)
        expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1)
      }
    }
    // After the burst the gateway is at rest and admits again.
    const after = await post(url, "/v1/sessions/burst-after/turns", { message: "after" })
    expect(after.status).toBe(200)
    const log = gateway.logs.filter((l) => l.level === "ERROR" || l.level === "FATAL")
    expect(log).toEqual([])
  }, 120_000)
})
