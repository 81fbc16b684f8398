/**
 * Three gateway processes on one PostgreSQL database. Clients send turns and `/compact` for 50
 * sessions to random gateways for 30 s, with compactions that outlive their turns (summaries
 * take 1.5 s, turns time out at 1 s); every 5 s the gateway that served the most sessions in
 * the last 5 s is SIGKILLed and started again. At the end every turn answered `completed` has
 * its user message and its reply in the transcript exactly once, each session's
 * `compactionCount` equals its compaction entries, no seq is duplicated or missing, and no SSE
 * subscriber saw a `CompactionCompleted` twice. Prints the takeover time (kill → the session
 * answered by another gateway) p50/p99.
 */
import { execFileSync } from "node:child_process"
import { randomUUID } from "node:crypto"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import {
  client,
  dataOf,
  type EventStream,
  paragraph,
  removeTempDirs,
  smallWindows,
  tempDir
} from "./support/http.js"
import { type GatewayProcess, killAll, startGateway, stopGateway } from "./support/process.js"

const server = process.env.CONVERGE_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"
const name = `converge_cluster_${process.pid}`
const url = (() => {
  const u = new URL(server)
  u.pathname = `/${name}`
  return u.toString()
})()
const psql = (database: string, sql: string) =>
  execFileSync("psql", [database, "-qAtc", sql], {
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 512 * 1024 * 1024
  }).toString()

afterEach(killAll)
afterAll(async () => {
  await removeTempDirs()
  psql(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
})

const SESSIONS = 50
const RUN_MS = 30_000
const KILL_EVERY_MS = 5_000
const WORKERS = 10

interface TurnAnswer {
  readonly outcome: string
  readonly sessionId: string
  readonly reply?: string
  readonly error?: { readonly message: string }
}

interface Completed {
  readonly key: string
  readonly message: string
  readonly reply: string
  readonly sessionId: string
}

/** One gateway slot: the process now in it, and each process it had (`generation`). */
interface Slot {
  gateway: GatewayProcess
  generation: number
  events: EventStream | undefined
}

const percentile = (xs: ReadonlyArray<number>, p: number) => {
  if (xs.length === 0) return Number.NaN
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

describe("three gateways on one database, one SIGKILLed every 5 s", () => {
  it("loses no acknowledged turn, counts every compaction once, and hands sessions over", async () => {
    psql(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    psql(server, `CREATE DATABASE ${name}`)
    const env = async () => ({
      ...smallWindows,
      CONVERGE_DATABASE_URL: url,
      CONVERGE_SESSIONS_DIR: await tempDir("converge-cluster-"),
      CONVERGE_LEASE_MS: "1000",
      CONVERGE_LOCAL_REPLY_MS: "20",
      CONVERGE_LOCAL_SUMMARY_MS: "1500",
      CONVERGE_TURN_TIMEOUT_MS: "1000",
      CONVERGE_COMPACTION_WAIT_MS: "200",
      CONVERGE_FLUSH_INTERVAL_MS: "20",
      CONVERGE_DRAIN_TIMEOUT_MS: "3000"
    })
    /** Every CompactionCompleted each subscription saw (a subscription lives as long as its process). */
    const subscriptions: Array<EventStream> = []
    const subscribe = async (slot: Slot) => {
      slot.events = await client(slot.gateway.url).events()
      subscriptions.push(slot.events)
    }
    const slots: Array<Slot> = []
    for (let i = 0; i < 3; i++) {
      const slot: Slot = { gateway: await startGateway(await env()), generation: 0, events: undefined }
      await subscribe(slot)
      slots.push(slot)
    }

    const completed: Array<Completed> = []
    /** Per session: when and by which process (slot:generation) it was last answered. */
    const served: Array<{ readonly key: string; readonly by: string; readonly at: number }> = []
    const statuses = new Map<number, number>()
    const outcomes = new Map<string, number>()
    const failures = new Set<string>()
    const count = (status: number) => statuses.set(status, (statuses.get(status) ?? 0) + 1)
    const startedAt = Date.now()
    const running = () => Date.now() - startedAt < RUN_MS

    /** Sends one turn (or `/compact`) for `key` to slot `i`; gives the HTTP status (0: the connection failed). */
    const send = async (i: number, key: string, message: string, compact: boolean) => {
      const slot = slots[i]!
      const by = `${i}:${slot.generation}`
      try {
        const c = client(slot.gateway.url)
        const answer = compact
          ? await c.post(`/v1/sessions/${key}/compact`, { waitMs: 0 })
          : await c.post<TurnAnswer>(`/v1/sessions/${key}/turns`, { message })
        count(answer.status)
        if (answer.status === 200 && !compact) {
          const body = answer.body as TurnAnswer
          outcomes.set(body.outcome, (outcomes.get(body.outcome) ?? 0) + 1)
          // Served (its lease taken, its turn run) whether it completed or timed out.
          served.push({ key, by, at: Date.now() })
          if (body.outcome === "failed") failures.add(String(body.error?.message).slice(0, 160))
          if (body.outcome === "completed" && body.reply !== undefined)
            completed.push({ key, message, reply: body.reply, sessionId: body.sessionId })
        }
        return answer.status
      } catch {
        count(0) // the connection failed: the gateway was killed
        return 0
      }
    }
    let sent = 0
    const nextMessage = () => `m-${sent++}-${randomUUID()} ${paragraph(sent)}`

    const worker = async () => {
      while (running()) {
        const key = `agent:main:c${Math.floor(Math.random() * SESSIONS)}`
        const first = Math.floor(Math.random() * 3)
        const compact = Math.random() < 0.1
        let message = nextMessage()
        // A load balancer's part: a session leased elsewhere (409) or a gateway gone is tried on the next one.
        for (let attempt = 0; attempt < 3 && running(); attempt++) {
          const status = await send((first + attempt) % 3, key, message, compact)
          if (status !== 409 && status !== 0) break
          // No answer: the gateway may have written the message before it died, so what is sent
          // next is another turn (a 409 wrote nothing, and is sent again as it was).
          if (status === 0) message = nextMessage()
        }
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    }

    const takeovers: Array<number> = []
    const killer = async () => {
      const pending: Array<Promise<void>> = []
      while (Date.now() - startedAt + KILL_EVERY_MS < RUN_MS) {
        await new Promise((resolve) => setTimeout(resolve, KILL_EVERY_MS))
        const now = Date.now()
        const recent = served.filter((s) => now - s.at < KILL_EVERY_MS)
        const bySlot = [0, 1, 2].map((i) => {
          const current = `${i}:${slots[i]!.generation}`
          return new Set(recent.filter((s) => s.by === current).map((s) => s.key))
        })
        const victim = bySlot.reduce((best, keys, i) => (keys.size > bySlot[best]!.size ? i : best), 0)
        const slot = slots[victim]!
        const sessions = bySlot[victim]!
        const killedAt = Date.now()
        slot.gateway.child.kill("SIGKILL")
        await slot.gateway.exited
        slot.generation++
        // The takeover of each session it was serving: a client asks the other two gateways
        // every 50 ms until one serves it.
        const others = [0, 1, 2].filter((i) => i !== victim)
        for (const key of sessions) {
          pending.push(
            (async () => {
              for (let n = 0; running(); n++) {
                const status = await send(others[n % 2]!, key, nextMessage(), false)
                if (status === 200) {
                  takeovers.push(Date.now() - killedAt)
                  return
                }
                await new Promise((resolve) => setTimeout(resolve, 50))
              }
            })()
          )
        }
        slot.gateway = await startGateway(await env())
        await subscribe(slot)
      }
      await Promise.all(pending)
    }

    await Promise.all([killer(), ...Array.from({ length: WORKERS }, () => worker())])
    // Let the compactions still running finish, then stop every gateway cleanly (stores flushed).
    await new Promise((resolve) => setTimeout(resolve, 2_500))
    for (const slot of slots) await stopGateway(slot.gateway)

    const p50 = percentile(takeovers, 50)
    const p99 = percentile(takeovers, 99)
    console.log(
      `cluster: ${completed.length} turns completed; statuses ${JSON.stringify(Object.fromEntries(statuses))}; ` +
        `outcomes ${JSON.stringify(Object.fromEntries(outcomes))}; ` +
        `takeover (kill → served by another gateway) p50 ${p50} ms, p99 ${p99} ms over ${takeovers.length} sessions`
    )
    expect(completed.length).toBeGreaterThan(100)
    expect(statuses.get(500) ?? 0).toBe(0)
    expect(takeovers.length).toBeGreaterThan(0)

    // Every completed turn: its user message and its reply, once each.
    const rows = psql(
      url,
      `SELECT session_id, entry::text FROM converge_entries WHERE entry->>'type' = 'message'`
    )
    expect(rows.length).toBeGreaterThan(0)
    const bySession = new Map<string, Array<string>>()
    for (const line of rows.split("\n")) {
      const cut = line.indexOf("|")
      if (cut < 0) continue
      const list = bySession.get(line.slice(0, cut)) ?? []
      list.push(line.slice(cut + 1))
      bySession.set(line.slice(0, cut), list)
    }
    for (const turn of completed) {
      const lines = bySession.get(turn.sessionId) ?? []
      const user = lines.filter((l) => l.includes('"role":"user"') && l.includes(turn.message.slice(0, 60)))
      const reply = lines.filter(
        (l) => l.includes('"role":"assistant"') && l.includes(JSON.stringify(turn.reply).slice(1, -1))
      )
      expect(user, `user message of a completed turn in ${turn.key}`).toHaveLength(1)
      expect(reply, `reply of a completed turn in ${turn.key}`).toHaveLength(1)
    }

    // Seqs: 0 … next_seq − 1, each once.
    const gaps = psql(
      url,
      `SELECT t.session_id FROM converge_transcripts t
       LEFT JOIN (SELECT session_id, count(*) AS n, max(seq) AS top FROM converge_entries GROUP BY session_id) e
         ON e.session_id = t.session_id
       WHERE coalesce(e.n, 0) <> t.next_seq OR coalesce(e.top, -1) <> t.next_seq - 1`
    )
    expect(gaps.trim()).toBe("")

    // compactionCount of every session = the compaction entries of its transcript.
    const mismatched = psql(
      url,
      `SELECT s.session_key || ' ' || coalesce(s.compaction_count, 0) || ' ' || count(e.seq)
       FROM converge_sessions s LEFT JOIN converge_entries e
         ON e.session_id = s.session_id AND e.compaction_id IS NOT NULL
       GROUP BY s.session_key, s.compaction_count
       HAVING coalesce(s.compaction_count, 0) <> count(e.seq)`
    )
    expect(mismatched.trim()).toBe("")
    const compactions = Number(
      psql(url, "SELECT count(*) FROM converge_entries WHERE compaction_id IS NOT NULL")
    )
    expect(compactions).toBeGreaterThan(0)

    // No subscriber saw a compaction twice.
    for (const events of subscriptions) {
      const ids = dataOf<{ compactionId: string }>(events.events, "CompactionCompleted").map(
        (e) => e.compactionId
      )
      expect(new Set(ids).size).toBe(ids.length)
      events.close()
    }
    const seen = new Set(
      subscriptions.flatMap((s) =>
        dataOf<{ compactionId: string }>(s.events, "CompactionCompleted").map((e) => e.compactionId)
      )
    )
    console.log(`cluster: ${compactions} compactions in the transcripts, ${seen.size} seen over SSE`)
    // Turns that overflowed while their compaction was still running (or died with a gateway).
    const reasons = [...failures].map((f) => f.replace(/\d+ tokens/g, "N tokens").split("\n")[0])
    console.log(`cluster: failed turns said ${JSON.stringify([...new Set(reasons)])}`)
  }, 120_000)
})
