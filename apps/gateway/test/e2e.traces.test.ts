/**
 * Traces leave the real gateway process by OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is
 * set: a collector on loopback (a plain Node HTTP server) receives the turn's spans.
 */
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { client, removeTempDirs, tempDir, waitFor } from "./support/http.js"
import { killAll, startGateway, stopGateway } from "./support/process.js"

afterEach(killAll)
afterAll(removeTempDirs)

interface OtlpSpan {
  readonly name: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly attributes: ReadonlyArray<{ key: string; value: { stringValue?: string } }>
}
interface OtlpExport {
  readonly resourceSpans: ReadonlyArray<{
    readonly resource: { readonly attributes: OtlpSpan["attributes"] }
    readonly scopeSpans: ReadonlyArray<{ readonly spans: ReadonlyArray<OtlpSpan> }>
  }>
}

/** A collector that keeps every OTLP/HTTP JSON export it receives. */
const collector = async () => {
  const received: Array<OtlpExport> = []
  const server: Server = createServer((request, response) => {
    const chunks: Array<Buffer> = []
    request.on("data", (c: Buffer) => chunks.push(c))
    request.on("end", () => {
      if (request.url === "/v1/traces") received.push(JSON.parse(Buffer.concat(chunks).toString("utf8")))
      response.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  const spans = () =>
    received.flatMap((e) => e.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)))
  return { url: `http://127.0.0.1:${port}`, received, spans, close: () => server.close() }
}

const attribute = (span: Pick<OtlpSpan, "attributes">, key: string) =>
  span.attributes.find((a) => a.key === key)?.value.stringValue

describe("traces by OTLP", { timeout: 60_000 }, () => {
  it("exports the request span with the turn's spans under it, named by OTEL_SERVICE_NAME", async () => {
    const otlp = await collector()
    try {
      const gateway = await startGateway({
        CONVERGE_SESSIONS_DIR: await tempDir(),
        OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
        OTEL_SERVICE_NAME: "converge-e2e",
        OTEL_BSP_SCHEDULE_DELAY: "100"
      })
      const answer = await client(gateway.url).post("/v1/sessions/traced:1/turns", { message: "hello" })
      expect(answer.status).toBe(200)
      const turn = await waitFor(() => otlp.spans().find((s) => s.name === "converge.turn"))
      expect(attribute(turn, "session.key")).toBe("traced:1")
      expect(attribute(turn, "outcome")).toBe("completed")
      expect(attribute(turn, "run.id")).toBe(answer.body.runId)
      const request = otlp.spans().find((s) => s.spanId === turn.parentSpanId)
      expect(request?.attributes.find((a) => a.key === "http.request.method")?.value.stringValue).toBe("POST")
      await waitFor(() =>
        otlp.spans().some((s) => s.name === "converge.model.call" && s.traceId === turn.traceId)
          ? true
          : undefined
      )
      const resource = otlp.received[0]!.resourceSpans[0]!.resource
      expect(attribute(resource, "service.name")).toBe("converge-e2e")
      expect((await stopGateway(gateway)).code).toBe(0)
    } finally {
      otlp.close()
    }
  })
})
