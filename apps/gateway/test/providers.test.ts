/**
 * `CONVERGE_MODEL=openai` and `anthropic`: the gateway talks to each provider's API through
 * `@effect/ai-openai` / `@effect/ai-anthropic`, here a small fake provider on loopback.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { SUMMARY_PROMPT_PREFIX } from "@converge/domain"
import { client, paragraph, removeTempDirs, tempDir } from "./support/http.js"
import { closeAll, startFromEnv } from "./support/inProcess.js"

interface Recorded {
  readonly method: string
  readonly url: string
  readonly headers: IncomingHttpHeaders
  readonly body: Record<string, unknown>
  readonly summary: boolean
}

const servers: Array<Server> = []
afterEach(async () => {
  await closeAll()
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))))
})
afterAll(removeTempDirs)

/** A fake provider: records each request and answers with `answer(summary)`. */
const fakeProvider = async (answer: (summary: boolean, text: string) => unknown) => {
  const recorded: Array<Recorded> = []
  const server = createServer((req, res) => {
    let raw = ""
    req.on("data", (chunk: Buffer) => {
      raw += chunk.toString("utf8")
    })
    req.on("end", () => {
      const summary = raw.includes(SUMMARY_PROMPT_PREFIX)
      const body = JSON.parse(raw) as Record<string, unknown>
      recorded.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body, summary })
      res.writeHead(200, { "content-type": "application/json" })
      res.end(
        JSON.stringify(
          answer(summary, summary ? "Summary: the user sent long lines." : "hello from the fake provider")
        )
      )
    })
  })
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return { recorded, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

const openAiResponse = (_: boolean, text: string) => ({
  id: "resp_1",
  object: "response",
  status: "completed",
  created_at: 1,
  error: null,
  incomplete_details: null,
  instructions: null,
  model: "fake-gpt",
  tools: [],
  tool_choice: "auto",
  parallel_tool_calls: true,
  metadata: {},
  temperature: 1,
  top_p: 1,
  output: [
    {
      type: "message",
      id: "msg_1",
      status: "completed",
      role: "assistant",
      content: [{ type: "output_text", text, annotations: [] }]
    }
  ],
  usage: {
    input_tokens: 12,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: 5,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: 17
  }
})

const anthropicMessage = (_: boolean, text: string) => ({
  id: "msg_1",
  type: "message",
  role: "assistant",
  model: "fake-claude",
  content: [{ type: "text", text }],
  stop_reason: "end_turn",
  stop_sequence: null,
  usage: { input_tokens: 12, output_tokens: 5 }
})

interface Turn {
  readonly outcome: string
  readonly reply?: string
  readonly status: { readonly tokens: { readonly input: number | null; readonly output: number | null } }
}

/** A turn, two more, and a manual compaction through the provider. */
const converse = async (url: string) => {
  const c = client(url)
  const first = await c.post<Turn>("/v1/sessions/provider/turns", { message: "hello provider" })
  expect(first.status).toBe(200)
  expect(first.body).toMatchObject({ outcome: "completed", reply: "hello from the fake provider" })
  expect(first.body.status.tokens).toMatchObject({ input: 12, output: 5 })
  for (let i = 0; i < 2; i++) await c.post("/v1/sessions/provider/turns", { message: paragraph(i) })
  const compact = await c.post<{ state: string; status: { compactionCount: number } }>(
    "/v1/sessions/provider/compact",
    { waitMs: 10_000 }
  )
  expect(compact.body).toMatchObject({ state: "completed", status: { compactionCount: 1 } })
}

const baseEnv = async () => ({
  CONVERGE_SESSIONS_DIR: await tempDir(),
  CONVERGE_PORT: "0",
  CONVERGE_KEEP_RECENT_TOKENS: "10",
  CONVERGE_FLUSH_INTERVAL_MS: "10"
})

describe("model providers", { timeout: 30_000 }, () => {
  it("CONVERGE_MODEL=openai calls the Responses API at OPENAI_BASE_URL with the key and CONVERGE_MODEL_NAME", async () => {
    const fake = await fakeProvider(openAiResponse)
    const gateway = await startFromEnv({
      ...(await baseEnv()),
      CONVERGE_MODEL: "openai",
      CONVERGE_MODEL_NAME: "fake-gpt",
      OPENAI_API_KEY: "sk-test",
      OPENAI_BASE_URL: `${fake.base}/v1`
    })
    await converse(gateway.url)
    expect(fake.recorded.length).toBeGreaterThanOrEqual(4)
    for (const r of fake.recorded) {
      expect(r).toMatchObject({ method: "POST", url: "/v1/responses", body: { model: "fake-gpt" } })
      expect(r.headers.authorization).toBe("Bearer sk-test")
    }
    expect(JSON.stringify(fake.recorded[0]?.body.input)).toContain("hello provider")
    expect(fake.recorded.filter((r) => r.summary)).toHaveLength(1)
  })

  it("CONVERGE_MODEL=anthropic calls the Messages API at ANTHROPIC_BASE_URL with the key and CONVERGE_MODEL_NAME", async () => {
    const fake = await fakeProvider(anthropicMessage)
    const gateway = await startFromEnv({
      ...(await baseEnv()),
      CONVERGE_MODEL: "anthropic",
      CONVERGE_MODEL_NAME: "fake-claude",
      ANTHROPIC_API_KEY: "ak-test",
      ANTHROPIC_BASE_URL: fake.base
    })
    await converse(gateway.url)
    expect(fake.recorded.length).toBeGreaterThanOrEqual(4)
    for (const r of fake.recorded) {
      expect(r).toMatchObject({ method: "POST", body: { model: "fake-claude" } })
      expect(r.url).toMatch(/^\/v1\/messages/)
      expect(r.headers["x-api-key"]).toBe("ak-test")
    }
    expect(JSON.stringify(fake.recorded[0]?.body.messages)).toContain("hello provider")
    expect(fake.recorded.filter((r) => r.summary)).toHaveLength(1)
  })
})
