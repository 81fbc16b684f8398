/**
 * `GET /metrics` read by a real Prometheus text parser, and the sessions page at `GET /` in
 * headless Chromium (Debian's package, driven by playwright-core).
 */
import { existsSync } from "node:fs"
import * as path from "node:path"
import parsePrometheus, { type Family } from "parse-prometheus-text-format"
import { chromium } from "playwright-core"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { client, paragraph, removeTempDirs, tempDir, waitFor } from "./support/http.js"
import { closeAll, startEmbedded } from "./support/inProcess.js"

afterEach(closeAll)
afterAll(removeTempDirs)

const small = { contextWindow: 2_000, reserveTokens: 500, keepRecentTokens: 200 }
const CHROMIUM = "/usr/bin/chromium"

const family = (families: ReadonlyArray<Family>, name: string) => {
  const found = families.find((f) => f.name === name)
  if (found === undefined) throw new Error(`no metric ${name} in the scrape`)
  return found
}
/** Observations of a histogram: its `+Inf` bucket (the parser keeps `_count` only when it follows the buckets). */
const observations = (f: Family) => Number(f.metrics[0]?.buckets?.["+Inf"] ?? Number.NaN)
const valueOf = (f: Family, labels: Record<string, string> = {}) =>
  Number(
    f.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value ?? Number.NaN
  )

describe("GET /metrics", { timeout: 30_000 }, () => {
  it("serves every Converge metric as Prometheus text, behind the token", async () => {
    const { gateway } = await startEmbedded({ config: { ...small, token: "s3cret" } })
    const c = client(gateway.url, "s3cret")
    const before = parsePrometheus((await c.get<string>("/metrics")).body)
    const completedBefore = valueOf(family(before, "converge_turns_total"), { outcome: "completed" })

    const events = await c.events()
    for (let i = 0; i < 3; i++) {
      expect((await c.post("/v1/sessions/metrics:1/turns", { message: paragraph(i) })).status).toBe(200)
    }
    expect((await c.post("/v1/sessions/metrics:1/compact", { waitMs: 10_000 })).body).toMatchObject({
      state: "completed"
    })

    expect((await client(gateway.url).get("/metrics")).status).toBe(401)
    const answer = await c.get<string>("/metrics")
    expect(answer.status).toBe(200)
    expect(answer.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/)
    const families = parsePrometheus(answer.body)
    const turns = family(families, "converge_turns_total")
    expect(turns.type).toBe("COUNTER")
    expect(valueOf(turns, { outcome: "completed", timeout: "none" }) - completedBefore).toBe(3)
    const latency = family(families, "converge_turn_duration_ms")
    expect(latency.type).toBe("HISTOGRAM")
    expect(observations(latency)).toBeGreaterThanOrEqual(3)
    expect(
      valueOf(family(families, "converge_compactions_total"), { reason: "manual", outcome: "completed" })
    ).toBeGreaterThanOrEqual(1)
    expect(observations(family(families, "converge_compaction_duration_ms"))).toBeGreaterThanOrEqual(1)
    expect(observations(family(families, "converge_transcript_append_duration_ms"))).toBeGreaterThan(0)
    expect(valueOf(family(families, "converge_sse_subscribers"))).toBeGreaterThanOrEqual(1)
    expect(valueOf(family(families, "converge_store_flush_bytes_total"))).toBeGreaterThan(0)
    for (const name of [
      "converge_late_completions_applied_total",
      "converge_compaction_joins_total",
      "converge_turns_refused_total",
      "converge_lane_waiting",
      "converge_lanes_busy",
      "converge_store_flush_duration_ms",
      "converge_resyncs_sent_total",
      "converge_model_errors_total",
      "converge_model_calls_total"
    ]) {
      family(families, name)
    }
    events.close()
  })
})

describe("the sessions page", { timeout: 60_000 }, () => {
  it("shows each session and follows its count and compaction without a reload", async () => {
    const { gateway } = await startEmbedded({
      config: { ...small, token: "s3cret", localSummaryMs: 1_500 }
    })
    const c = client(gateway.url, "s3cret")
    for (let i = 0; i < 3; i++) {
      expect((await c.post("/v1/sessions/page:1/turns", { message: paragraph(i) })).status).toBe(200)
    }
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] })
    try {
      const page = await browser.newPage()
      await page.goto(`${gateway.url}/`)
      // A protected gateway: the page asks for the token once.
      await page.locator("#token").fill("s3cret")
      await page.locator("#token-form button").click()
      const row = page.locator('tr[data-key="page:1"]')
      await row.waitFor()
      await page.locator('#live[data-state="live"]').waitFor()
      expect(await row.locator("td.count").textContent()).toBe("0")

      const compaction = c.post("/v1/sessions/page:1/compact", { waitMs: 10_000 })
      await page.locator('tr[data-key="page:1"] td.compaction.running').waitFor()
      expect((await compaction).body).toMatchObject({ state: "completed" })
      await waitFor(async () => ((await row.locator("td.count").textContent()) === "1" ? true : undefined))
      expect(await row.locator("td.compaction").textContent()).toBe("idle")

      // A session that appears while the page is open gets its row.
      await c.post("/v1/sessions/page:2/turns", { message: paragraph(1) })
      await page.locator('tr[data-key="page:2"] td.last-run.completed').waitFor()
      const shot = path.join(await tempDir("converge-page-"), "sessions-page.png")
      await page.screenshot({ path: shot, fullPage: true })
      expect(existsSync(shot)).toBe(true)
      if (process.env.CONVERGE_SCREENSHOT !== undefined)
        await page.screenshot({ path: process.env.CONVERGE_SCREENSHOT })

      // The token is kept: a reload goes straight to the table.
      await page.reload()
      await page.locator('#live[data-state="live"]').waitFor()
      expect(await page.locator("#token-form").isVisible()).toBe(false)
    } finally {
      await browser.close()
    }
  })
})
