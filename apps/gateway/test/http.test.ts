/**
 * The HTTP contract of DESIGN §7, in process: routes, shapes, status codes, the event stream,
 * the body limit, auth, and shutdown's 503s.
 */
import { connect } from "node:net"
import { Deferred, Effect, Schema } from "effect"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import {
  CompactResult,
  defaults,
  LifecycleEvent,
  SessionStatus,
  TurnResult,
  TurnStarted,
  type TurnResult as TurnResultType
} from "@converge/domain"
import { Settings } from "../src/index.js"
import { client, dataOf, removeTempDirs } from "./support/http.js"
import { closeAll, startEmbedded, startStubbed } from "./support/inProcess.js"

afterEach(closeAll)
afterAll(removeTempDirs)

const small = { contextWindow: 2_000, reserveTokens: 500, keepRecentTokens: 200 }

describe("routes and shapes", { timeout: 30_000 }, () => {
  it("answers every route of DESIGN §7 with its schema", async () => {
    const { gateway } = await startEmbedded({ config: small })
    const c = client(gateway.url)
    const turn = await c.post("/v1/sessions/chat:1/turns", { message: "hello" })
    expect(turn.status).toBe(200)
    const result = Schema.decodeUnknownSync(TurnResult)(turn.body)
    expect(result).toMatchObject({
      sessionKey: "chat:1",
      outcome: "completed",
      compaction: { state: "none" }
    })

    const status = await c.get("/v1/sessions/chat:1/status")
    expect(Schema.decodeUnknownSync(SessionStatus)(status.body)).toMatchObject({
      sessionId: result.sessionId,
      generation: 1,
      lastRun: { runId: result.runId, outcome: "completed" }
    })
    const list = await c.get<{ sessions: Array<unknown> }>("/v1/sessions")
    expect(list.body.sessions.map((s) => Schema.decodeUnknownSync(SessionStatus)(s).sessionKey)).toEqual([
      "chat:1"
    ])

    // No body at all means `{}`; curl's default form content type is read as JSON.
    const compact = await c.request("POST", "/v1/sessions/chat:1/compact")
    expect(compact.status).toBe(200)
    expect(Schema.decodeUnknownSync(CompactResult)(compact.body)).toMatchObject({
      state: "skipped",
      joined: false
    })
    const form = await c.request("POST", "/v1/sessions/chat:1/turns", '{"message":"as curl -d sends it"}', {
      "content-type": "application/x-www-form-urlencoded"
    })
    expect(form.status).toBe(200)

    const cancelled = await c.del("/v1/sessions/chat:1/compaction")
    expect(Schema.decodeUnknownSync(SessionStatus)(cancelled.body).compaction.state).toBe("idle")
    const reset = await c.post("/v1/sessions/chat:1/reset")
    expect(Schema.decodeUnknownSync(SessionStatus)(reset.body)).toMatchObject({
      generation: 2,
      compactionCount: 0
    })
    expect((await c.get("/healthz")).body).toEqual({ ok: true })

    for (const [method, path] of [
      ["POST", "/v1/sessions/none/compact"],
      ["DELETE", "/v1/sessions/none/compaction"],
      ["GET", "/v1/sessions/none/status"],
      ["POST", "/v1/sessions/none/reset"]
    ] as const) {
      const answer = await c.request(method, path)
      expect(answer.status, `${method} ${path}`).toBe(404)
      expect(answer.body).toMatchObject({ _tag: "SessionNotFound", message: expect.stringContaining("none") })
    }
  })

  it("answers 409 LaneFull when the session's lane is full", async () => {
    const { gateway } = await startEmbedded({ config: { laneQueue: 1, localReplyMs: 400 } })
    const c = client(gateway.url)
    const answers = await Promise.all(
      [0, 1, 2].map((i) =>
        new Promise((r) => setTimeout(r, i * 60)).then(() =>
          c.post(`/v1/sessions/lane/turns`, { message: `turn ${i}` })
        )
      )
    )
    expect(answers.map((a) => a.status)).toEqual([200, 200, 409])
    expect(answers[2]?.body).toMatchObject({
      _tag: "LaneFull",
      message: expect.stringContaining("laneQueue 1")
    })
  })

  it("serves the OpenAPI document and a page for it", async () => {
    const { gateway } = await startEmbedded()
    const c = client(gateway.url)
    const doc = await c.get<{
      paths: Record<string, Record<string, unknown>>
      components: { schemas: Record<string, unknown> }
    }>("/openapi.json")
    expect(doc.status).toBe(200)
    const routes = Object.entries(doc.body.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`)
    )
    expect(routes.sort()).toEqual(
      [
        "POST /v1/sessions/{key}/turns",
        "POST /v1/sessions/{key}/compact",
        "DELETE /v1/sessions/{key}/compaction",
        "GET /v1/sessions/{key}/status",
        "GET /v1/sessions",
        "POST /v1/sessions/{key}/reset",
        "GET /v1/events",
        "GET /healthz",
        "GET /metrics",
        "GET /"
      ].sort()
    )
    expect(Object.keys(doc.body.components.schemas)).toEqual(
      expect.arrayContaining(["TurnRequest", "TurnResult", "CompactResult", "SessionStatus"])
    )
    const page = await fetch(`${gateway.url}/docs`)
    expect(page.status).toBe(200)
    expect(page.headers.get("content-type")).toMatch(/text\/html/)
  })

  it("needs the bearer token on every route but /healthz and the page when one is set", async () => {
    const { gateway } = await startEmbedded({ config: { token: "s3cret" } })
    for (const path of [
      "/v1/sessions",
      "/openapi.json",
      "/docs",
      "/v1/events",
      "/metrics",
      "/v1/no-such-route"
    ]) {
      expect((await client(gateway.url).get(path)).status, path).toBe(401)
      expect((await client(gateway.url, "s3cre").get(path)).status, path).toBe(401)
      expect((await client(gateway.url, "s3cret!").get(path)).status, path).toBe(401)
    }
    expect((await client(gateway.url).get("/healthz")).status).toBe(200)
    expect((await client(gateway.url).get("/")).status).toBe(200)
    expect((await client(gateway.url, "s3cret").get("/v1/sessions")).status).toBe(200)
    const basic = await client(gateway.url).get("/v1/sessions", { authorization: "Basic czNjcmV0" })
    expect(basic.body).toMatchObject({ _tag: "Unauthorized", message: expect.stringContaining("Bearer") })
  })

  it("refuses a non-loopback host without a token, and serves it with one", async () => {
    const refused = await Effect.runPromise(Effect.flip(Settings.make({ ...defaults, host: "0.0.0.0" })))
    expect(refused).toMatchObject({ _tag: "ConfigError", variable: "CONVERGE_TOKEN" })
    expect(refused.message).toContain('CONVERGE_HOST="0.0.0.0" is not a loopback address')
    const { gateway } = await startEmbedded({ config: { host: "0.0.0.0", token: "t" } })
    expect((await client(gateway.url, "t").get("/v1/sessions")).status).toBe(200)
  })

  it("refuses a provider model without its API key, naming the variable", async () => {
    const error = await startEmbedded({ config: { model: "anthropic" }, env: {} }).then(
      () => undefined,
      (e: unknown) => e
    )
    expect(error).toMatchObject({ _tag: "ConfigError", variable: "ANTHROPIC_API_KEY" })
  })

  it("answers a body over 1 MiB with 413, announced or streamed", async () => {
    const { gateway } = await startEmbedded()
    const big = JSON.stringify({ message: "x".repeat(1024 * 1024) })
    const announced = await client(gateway.url).post("/v1/sessions/big/turns", big)
    expect(announced.status).toBe(413)
    expect(announced.body).toMatchObject({ _tag: "PayloadTooLarge" })
    // Streamed without a Content-Length, 40 chunks of 64 KiB: still a 413, not a dropped connection.
    const chunk = new TextEncoder().encode("x".repeat(64 * 1024))
    let sent = 0
    const body = new ReadableStream<Uint8Array>({
      pull: (controller) => (sent++ < 40 ? controller.enqueue(chunk) : controller.close())
    })
    const init = {
      method: "POST",
      body,
      duplex: "half" as const,
      headers: { "content-type": "application/json" }
    }
    const streamed = await fetch(`${gateway.url}/v1/sessions/big/turns`, init)
    expect(streamed.status).toBe(413)
    expect(await streamed.json()).toMatchObject({
      _tag: "PayloadTooLarge",
      message: expect.stringContaining("2621440 bytes")
    })
    // Just under the limit is decoded: the message is over 100 000 characters, so 400.
    const under = await client(gateway.url).post(
      "/v1/sessions/big/turns",
      JSON.stringify({ message: "x".repeat(1024 * 1000) })
    )
    expect(under.status).toBe(400)
    expect(JSON.stringify(under.body)).toMatch(/100000/)
    expect((await client(gateway.url).get("/healthz")).status).toBe(200)
  })
})

describe("events", { timeout: 30_000 }, () => {
  it("streams id, event and data, filtered by ?session=, with keep-alive comments", async () => {
    const { gateway } = await startEmbedded({ keepAliveMs: 50 })
    const c = client(gateway.url)
    const onlyA = await c.events("?session=a")
    const all = await c.events()
    await c.post("/v1/sessions/a/turns", { message: "one" })
    await c.post("/v1/sessions/b/turns", { message: "two" })
    await all.waitFor((es) => es.filter((e) => e.event === "TurnFinished").length === 2)
    await onlyA.waitFor((es) => es.some((e) => e.event === "TurnFinished"))
    await new Promise((r) => setTimeout(r, 150))
    expect(onlyA.events.map((e) => e.event)).toEqual(["TurnStarted", "UsageObserved", "TurnFinished"])
    expect(onlyA.events.map((e) => e.id)).toEqual(["1", "2", "3"])
    for (const e of all.events) {
      const decoded = Schema.decodeUnknownSync(LifecycleEvent)(JSON.parse(e.data ?? ""))
      expect(decoded._tag).toBe(e.event)
    }
    expect(dataOf(all.events, "TurnStarted").map((d) => d.sessionKey)).toEqual(["a", "b"])
    expect(onlyA.comments).toContain("keep-alive")
    const badFilter = await c.get("/v1/events?session=no%20spaces")
    expect(badFilter.status).toBe(400)
    onlyA.close()
    all.close()
  })

  it("a slow client gets Resync and never slows publishing", async () => {
    const { gateway, events } = await startStubbed({ config: { eventBufferSize: 16 } })
    const socket = connect(gateway.port, "127.0.0.1")
    const received: Array<string> = []
    socket.on("data", (chunk: Buffer) => received.push(chunk.toString("utf8")))
    socket.write("GET /v1/events HTTP/1.1\r\nhost: localhost\r\n\r\n")
    const text = () => received.join("")
    while (!text().includes(": connected")) await new Promise((r) => setTimeout(r, 10))
    socket.pause()
    const event = (i: number) =>
      new TurnStarted({
        sessionKey: "flood",
        sessionId: "x".repeat(200),
        generation: 1,
        at: i,
        runId: `run_${i}`
      })
    const started = Date.now()
    await Effect.runPromise(
      Effect.forEach(
        Array.from({ length: 50_000 }, (_, i) => event(i)),
        (e) => events.publish(e),
        { discard: true }
      )
    )
    expect(Date.now() - started).toBeLessThan(10_000)
    socket.resume()
    const deadline = Date.now() + 15_000
    while (!text().includes("event: Resync")) {
      if (Date.now() > deadline) throw new Error("no Resync: the client never fell behind")
      await new Promise((r) => setTimeout(r, 10))
    }
    socket.destroy()
    const ids = [...text().matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]))
    expect(ids.length).toBeLessThan(50_000)
    expect(ids).toEqual(ids.map((_, i) => i + 1))
  })
})

describe("shutdown", { timeout: 30_000 }, () => {
  it("answers 503 while draining and to requests still waiting when the runtime closes", async () => {
    const closing = Effect.runSync(Deferred.make<void>())
    const { gateway } = await startStubbed({
      runner: { turn: () => Effect.never },
      closeRuntime: Deferred.await(closing)
    })
    const c = client(gateway.url)
    const waiting = c.post<TurnResultType>("/v1/sessions/w/turns", { message: "never answered" })
    await new Promise((r) => setTimeout(r, 100))
    const closed = gateway.close()
    await new Promise((r) => setTimeout(r, 100))
    const refused = await c.get("/v1/sessions")
    expect(refused.status).toBe(503)
    expect(refused.headers.get("connection")).toBe("close")
    expect(refused.body).toMatchObject({ _tag: "ShuttingDown" })
    await Effect.runPromise(Deferred.succeed(closing, undefined))
    const answer = await waiting
    expect(answer.status).toBe(503)
    expect(answer.body).toMatchObject({ _tag: "ShuttingDown" })
    await closed
  })
})
