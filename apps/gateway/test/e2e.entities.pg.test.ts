/**
 * Sessions as cluster entities, with three gateway processes on one PostgreSQL database and no
 * balancer in front: each request goes to a random gateway.
 *
 * 1. Every answer is the one a single gateway would give: no 409 for a session another gateway
 *    holds; `/status` asked of each gateway is the same; a reset made through one is seen by all.
 * 2. Twenty times: a session's owner (the gateway whose log says it hosts the session) is
 *    SIGKILLed while the session's compaction runs and a turn, sent through another gateway,
 *    waits on it. That turn's client gets an answer (completed, or timed_out with the
 *    compaction pending); another runner serves the session within the takeover bound, with
 *    `/status` agreeing with the transcript; the killed compaction is published as
 *    `CompactionFailed{reason: "shutdown"}` once (never completed); the killed gateway is started again and takes
 *    shards back while a background load runs (a runner joining under load). At the end every
 *    completed turn's message and reply are in the transcript once, seqs have no gap, and every
 *    `compactionCount` equals its compaction entries. Prints the takeover time p50/p99.
 */
import { execFileSync } from "node:child_process"
import { randomUUID } from "node:crypto"
import { createConnection } from "node:net"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { client, dataOf, paragraph, removeTempDirs, smallWindows, tempDir } from "./support/http.js"
import { type GatewayProcess, killAll, startGateway, stopGateway } from "./support/process.js"

const server = process.env.CONVERGE_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"
const name = `converge_entities_${process.pid}`
const url = (() => {
  const u = new URL(server)
  u.pathname = `/${name}`
  return u.toString()
})()
const psql = (database: string, sql: string) =>
  execFileSync("psql", [database, "-qAtc", sql], {
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 256 * 1024 * 1024
  }).toString()

afterEach(killAll)
afterAll(async () => {
  await removeTempDirs()
  psql(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
})

const KILLS = Number(process.env.CONVERGE_TEST_KILLS ?? 20)
const SHARD_LOCK_MS = 2_000

interface TurnAnswer {
  readonly outcome: string
  readonly sessionId: string
  readonly reply?: string
  readonly compaction: { readonly state: string }
  readonly error?: { readonly _tag: string; readonly message: string }
}

interface Status {
  readonly sessionId: string
  readonly generation: number
  readonly compactionCount: number
  readonly compaction: { readonly state: string }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const percentile = (xs: ReadonlyArray<number>, p: number) => {
  if (xs.length === 0) return Number.NaN
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

const env = async () => ({
  ...smallWindows,
  CONVERGE_DATABASE_URL: url,
  CONVERGE_SESSIONS_DIR: await tempDir("converge-entities-"),
  CONVERGE_LEASE_MS: "1000",
  CONVERGE_SHARD_LOCK_MS: String(SHARD_LOCK_MS),
  CONVERGE_LOCAL_REPLY_MS: "10",
  CONVERGE_LOCAL_SUMMARY_MS: "1000",
  CONVERGE_TURN_TIMEOUT_MS: "8000",
  CONVERGE_COMPACTION_WAIT_MS: "8000",
  CONVERGE_FLUSH_INTERVAL_MS: "20",
  CONVERGE_DRAIN_TIMEOUT_MS: "2000"
})

/** The gateway whose log last said it hosts `key` (and has not said it let it go). */
const ownerOf = (gateways: ReadonlyArray<GatewayProcess>, key: string): number | undefined => {
  for (let i = 0; i < gateways.length; i++) {
    const logs = gateways[i]!.logs
    for (let j = logs.length - 1; j >= 0; j--) {
      const line = logs[j]!
      if (line.sessionKey !== key) continue
      if (line.message === "session hosted on this runner") return i
      if (line.message === "session no longer hosted on this runner") break
    }
  }
  return undefined
}

describe("sessions as cluster entities: three gateways, no balancer", () => {
  it("answers for any session on any gateway, and hands a session over when its owner is SIGKILLed", async () => {
    psql(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    psql(server, `CREATE DATABASE ${name}`)
    const gateways: Array<GatewayProcess> = []
    for (let i = 0; i < 3; i++) gateways.push(await startGateway(await env()))
    const statuses = new Map<number, number>()
    const count = (status: number) => statuses.set(status, (statuses.get(status) ?? 0) + 1)
    const completed: Array<{ key: string; message: string; reply: string; sessionId: string }> = []
    const random = () => Math.floor(Math.random() * gateways.length)

    /** One turn through gateway `i`: the HTTP status (0: the connection failed) and the answer. */
    const turn = async (i: number, key: string, message: string) => {
      try {
        const answer = await client(gateways[i]!.url).post<TurnAnswer>(`/v1/sessions/${key}/turns`, {
          message
        })
        count(answer.status)
        if (answer.status === 200 && answer.body.outcome === "completed" && answer.body.reply !== undefined)
          completed.push({ key, message, reply: answer.body.reply, sessionId: answer.body.sessionId })
        return answer
      } catch {
        count(0)
        return undefined
      }
    }
    let sent = 0
    const nextMessage = () => `m-${sent++}-${randomUUID()} ${paragraph(sent)}`

    // 1. Any gateway answers for any session.
    const refusals: Array<string> = []
    const keys = Array.from({ length: 12 }, (_, i) => `agent:main:any${i}`)
    await Promise.all(
      keys.map(async (key) => {
        for (let n = 0; n < 4; n++) {
          // A 503 (Overloaded, StorageUnavailable: nothing was done) is sent again, as a client
          // does after Retry-After; one gateway under the same load could answer it too.
          let answer = await turn(random(), key, nextMessage())
          for (let retry = 0; retry < 10 && answer?.status === 503; retry++) {
            refusals.push(JSON.stringify(answer.body).slice(0, 200))
            await sleep(500)
            answer = await turn(random(), key, nextMessage())
          }
          expect(answer?.status, `turn ${n} of ${key}`).toBe(200)
          expect(answer?.body.outcome).toBe("completed")
        }
      })
    )
    for (const key of keys) {
      const seen = await Promise.all(
        gateways.map((g) => client(g.url).get<Status>(`/v1/sessions/${key}/status`))
      )
      for (const s of seen) expect(s.status).toBe(200)
      expect(seen[1]!.body, `status of ${key} on gateways 0 and 1`).toEqual(seen[0]!.body)
      expect(seen[2]!.body, `status of ${key} on gateways 0 and 2`).toEqual(seen[0]!.body)
    }
    const compacted = await client(gateways[random()]!.url).post<{ state: string }>(
      `/v1/sessions/${keys[0]}/compact`,
      { waitMs: 5_000 }
    )
    expect(compacted.status).toBe(200)
    expect(["completed", "skipped"]).toContain(compacted.body.state)
    const reset = await client(gateways[0]!.url).post<Status>(`/v1/sessions/${keys[1]}/reset`)
    expect(reset.status).toBe(200)
    for (const g of gateways.slice(1)) {
      const after = await client(g.url).get<Status>(`/v1/sessions/${keys[1]}/status`)
      expect(after.body.sessionId).toBe(reset.body.sessionId)
      expect(after.body.generation).toBe(reset.body.generation)
    }
    expect(statuses.get(409) ?? 0).toBe(0)
    if (refusals.length > 0) console.log(`entities: refused and sent again: ${refusals.join("; ")}`)

    // Background load for the rest: turns for 10 sessions through random gateways.
    let loading = true
    const load = (async () => {
      while (loading) {
        const i = random()
        if (gateways[i]!.child.exitCode === null && gateways[i]!.child.signalCode === null)
          await turn(i, `agent:main:load${Math.floor(Math.random() * 10)}`, nextMessage())
        await sleep(20)
      }
    })()

    // 2. The owner SIGKILLed while its session compacts and a turn waits on it.
    const takeovers: Array<number> = []
    const outcomes = new Map<string, number>()
    let restarting: Promise<void> = Promise.resolve()
    let seenCompletions = 0
    const phases = new Map<string, number>()
    let mark = Date.now()
    const phase = (name: string) => {
      const now = Date.now()
      phases.set(name, (phases.get(name) ?? 0) + now - mark)
      mark = now
    }
    for (let round = 0; round < KILLS; round++) {
      // The gateway killed last round is back before the next owner is killed.
      phase("other")
      await restarting
      phase("restart")
      const key = `agent:main:kill${round}`
      for (let n = 0; n < 3; n++) expect((await turn(random(), key, nextMessage()))?.status).toBe(200)
      // Sent through a gateway that (its log says) does not host the session.
      phase("prime")
      const host = ownerOf(gateways, key)
      expect(host, `the host of ${key} said so in its log`).toBeDefined()
      const via = (host! + 1 + Math.floor(Math.random() * 2)) % 3
      const started = await client(gateways[via]!.url).post<{ state: string; compactionId: string }>(
        `/v1/sessions/${key}/compact`,
        { waitMs: 0 }
      )
      expect(started.status).toBe(200)
      expect(started.body.state).toBe("pending")
      // The runner running it (a shard may have just moved to the gateway started last round).
      const runner = psql(
        url,
        `SELECT split_part(owner, '#', 1) FROM converge_running_compactions WHERE compaction_id = '${started.body.compactionId}'`
      ).trim()
      const owner = gateways.findIndex((g) => g.logs.some((l) => l.message === `Listening on: ${runner}`))
      expect(owner, `the gateway of runner ${runner}`).toBeGreaterThanOrEqual(0)
      const front = (owner + 1 + Math.floor(Math.random() * 2)) % 3
      const events = await client(gateways[front]!.url).events()
      phase("compact")
      const waiting = turn(front, key, nextMessage())
      await sleep(300)
      const killedAt = Date.now()
      gateways[owner]!.child.kill("SIGKILL")
      await gateways[owner]!.exited
      // The killed gateway comes back at once: it joins and takes shards while the session is
      // taken over and settles (a shard may move twice), under the background load.
      restarting = env().then(async (e) => {
        gateways[owner] = await startGateway(e)
      })

      // Served again by another runner: /status through the front answers.
      for (;;) {
        const s = await client(gateways[front]!.url)
          .get<Status>(`/v1/sessions/${key}/status`)
          .catch(() => undefined)
        if (s?.status === 200) break
        await sleep(50)
      }
      takeovers.push(Date.now() - killedAt)
      phase("takeover")
      const answer = await waiting
      phase("waiting")
      expect(answer?.status, `the waiting turn of ${key} is answered`).toBe(200)
      const body = answer!.body
      outcomes.set(body.outcome, (outcomes.get(body.outcome) ?? 0) + 1)
      expect(
        body.outcome === "completed" || (body.outcome === "timed_out" && body.compaction.state === "pending"),
        `the waiting turn of ${key} answered ${JSON.stringify(body)}`
      ).toBe(true)

      // Once no compaction runs, /status agrees with the transcript.
      let status: Status | undefined
      for (let n = 0; n < 200; n++) {
        const s = await client(gateways[front]!.url).get<Status>(`/v1/sessions/${key}/status`)
        if (s.status === 200 && s.body.compaction.state !== "running") {
          status = s.body
          break
        }
        await sleep(50)
      }
      expect(status, `${key} settles`).toBeDefined()
      phase("settle")
      const entries = Number(
        psql(
          url,
          `SELECT count(*) FROM converge_entries WHERE session_id = '${status!.sessionId}' AND compaction_id IS NOT NULL`
        )
      )
      expect(status!.compactionCount, `compactionCount of ${key}`).toBe(entries)

      // The dead runner's compaction is not silently lost: failed (shutdown), once, never completed.
      const failedOf = () =>
        dataOf<{ compactionId: string; reason: string }>(events.events, "CompactionFailed").filter(
          (e) => e.compactionId === started.body.compactionId
        )
      for (let n = 0; n < 200 && failedOf().length === 0; n++) await sleep(50)
      expect(
        failedOf().map((e) => e.reason),
        `the failure of ${key}'s killed compaction`
      ).toEqual(["shutdown"])
      phase("failed")
      const completedOf = dataOf<{ compactionId: string }>(events.events, "CompactionCompleted").filter(
        (e) => e.compactionId === started.body.compactionId
      )
      expect(completedOf).toHaveLength(0)
      // And no compaction reached this subscriber twice.
      const ids = dataOf<{ compactionId: string }>(events.events, "CompactionCompleted").map(
        (e) => e.compactionId
      )
      expect(new Set(ids).size).toBe(ids.length)
      seenCompletions += ids.length
      events.close()
    }
    console.log(`entities: round phases (ms, sum over rounds) ${JSON.stringify(Object.fromEntries(phases))}`)
    await restarting
    loading = false
    await load
    await sleep(2_000)
    for (const g of gateways) await stopGateway(g)

    console.log(
      `entities: ${completed.length} turns completed; statuses ${JSON.stringify(Object.fromEntries(statuses))}; ` +
        `waiting turns ${JSON.stringify(Object.fromEntries(outcomes))}; takeover (owner SIGKILLed → /status ` +
        `served) p50 ${percentile(takeovers, 50)} ms, p99 ${percentile(takeovers, 99)} ms over ${takeovers.length} kills; ` +
        `${seenCompletions} CompactionCompleted seen by the per-round subscribers, none twice`
    )
    expect(statuses.get(409) ?? 0).toBe(0)
    expect(statuses.get(500) ?? 0).toBe(0)

    // Every completed turn: its user message and its reply, once each.
    const rows = psql(
      url,
      `SELECT session_id, entry::text FROM converge_entries WHERE entry->>'type' = 'message'`
    )
    const bySession = new Map<string, Array<string>>()
    for (const line of rows.split("\n")) {
      const cut = line.indexOf("|")
      if (cut < 0) continue
      const list = bySession.get(line.slice(0, cut)) ?? []
      list.push(line.slice(cut + 1))
      bySession.set(line.slice(0, cut), list)
    }
    for (const t of completed) {
      const lines = bySession.get(t.sessionId) ?? []
      const user = lines.filter((l) => l.includes('"role":"user"') && l.includes(t.message.slice(0, 60)))
      const reply = lines.filter(
        (l) => l.includes('"role":"assistant"') && l.includes(JSON.stringify(t.reply).slice(1, -1))
      )
      expect(user, `user message of a completed turn in ${t.key}`).toHaveLength(1)
      expect(reply, `reply of a completed turn in ${t.key}`).toHaveLength(1)
    }
    const gaps = psql(
      url,
      `SELECT t.session_id FROM converge_transcripts t
       LEFT JOIN (SELECT session_id, count(*) AS n, max(seq) AS top FROM converge_entries GROUP BY session_id) e
         ON e.session_id = t.session_id
       WHERE coalesce(e.n, 0) <> t.next_seq OR coalesce(e.top, -1) <> t.next_seq - 1`
    )
    expect(gaps.trim()).toBe("")
    const mismatched = psql(
      url,
      `SELECT s.session_key || ' ' || coalesce(s.compaction_count, 0) || ' ' || count(e.seq)
       FROM converge_sessions s LEFT JOIN converge_entries e
         ON e.session_id = s.session_id AND e.compaction_id IS NOT NULL
       GROUP BY s.session_key, s.compaction_count
       HAVING coalesce(s.compaction_count, 0) <> count(e.seq)`
    )
    expect(mismatched.trim()).toBe("")
  }, 300_000)

  it("with a token, runners authenticate each other: peers serve each other's sessions, a stranger is closed", async () => {
    const authName = `${name}_auth`
    const authUrl = url.replace(`/${name}`, `/${authName}`)
    psql(server, `DROP DATABASE IF EXISTS ${authName} WITH (FORCE)`)
    psql(server, `CREATE DATABASE ${authName}`)
    try {
      const token = "runner-test-token"
      const withToken = async () => ({
        ...(await env()),
        CONVERGE_DATABASE_URL: authUrl,
        CONVERGE_TOKEN: token
      })
      const a = await startGateway(await withToken())
      const b = await startGateway(await withToken())
      // Every session through both gateways: half of them are forwarded to the other runner.
      for (let i = 0; i < 8; i++)
        for (const g of [a, b]) {
          const answer = await client(g.url, token).post<TurnAnswer>(
            `/v1/sessions/agent:main:auth${i}/turns`,
            {
              message: `hello ${i}`
            }
          )
          expect(answer.status).toBe(200)
          expect(answer.body.outcome).toBe("completed")
        }
      const hosted = (g: GatewayProcess) =>
        g.logs.filter((l) => l.message === "session hosted on this runner").length
      expect(hosted(a)).toBeGreaterThan(0)
      expect(hosted(b)).toBeGreaterThan(0)

      // A connection to a's runner socket that does not start with the hello is closed.
      const listening = a.logs.find(
        (l) => typeof l.message === "string" && l.message.startsWith("Listening on: ")
      )
      const [host, port] = String(listening?.message).slice("Listening on: ".length).split(":")
      const closed = await new Promise<boolean>((resolve) => {
        const socket = createConnection({ host: host!, port: Number(port) }, () => {
          socket.write(`${"x".repeat(300)}\n`)
        })
        socket.on("close", () => resolve(true))
        socket.on("error", () => undefined)
        setTimeout(() => {
          socket.destroy()
          resolve(false)
        }, 5_000)
      })
      expect(closed, "the runner closes a connection without the hello").toBe(true)
      await a.waitForLog(
        (l) => typeof l.message === "string" && l.message.startsWith("runner connection refused"),
        5_000
      )
      await stopGateway(a)
      await stopGateway(b)
    } finally {
      psql(server, `DROP DATABASE IF EXISTS ${authName} WITH (FORCE)`)
    }
  }, 120_000)
})
