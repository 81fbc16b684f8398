/**
 * The Promise facade on the real file system: what a host that is not written in Effect sees.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import type { LifecycleEvent } from "@converge/domain"
import { ConvergeError, type ConvergeRuntime, createRuntime, type RuntimeOptions } from "../src/index.js"

const dirs: Array<string> = []
const runtimes: Array<ConvergeRuntime> = []

afterEach(async () => {
  await Promise.allSettled(runtimes.splice(0).map((rt) => rt.dispose()))
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })))
})

const tempDir = async () => {
  const dir = await mkdtemp(join(tmpdir(), "converge-runtime-"))
  dirs.push(dir)
  return dir
}

/** Small windows: four 1 600-character messages cross the threshold (1 500 tokens). */
const small: RuntimeOptions = {
  model: "local",
  contextWindow: 2_000,
  reserveTokens: 500,
  keepRecentTokens: 200,
  localReplyMs: 5,
  localSummaryMs: 5,
  flushIntervalMs: 10,
  drainTimeoutMs: 2_000
}

const start = async (options: RuntimeOptions) => {
  const rt = await createRuntime(options)
  runtimes.push(rt)
  return rt
}

const paragraph = (n: number) =>
  `${`line ${n} of the conversation, with enough words to count. `.repeat(27)}`.slice(0, 1_600)

/** Fills `key` with three long turns: the next long message crosses the threshold. */
const fill = async (rt: ConvergeRuntime, key: string) => {
  for (let i = 0; i < 3; i++) {
    const result = await rt.turn(key, paragraph(i))
    expect(result.outcome).toBe("completed")
  }
}

const transcriptLines = async (dir: string, sessionId: string) =>
  (await readFile(join(dir, `${sessionId}.jsonl`), "utf8"))
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as { type: string; compactionId?: string })

const waitFor = async <A>(
  f: () => Promise<A | undefined> | A | undefined,
  timeoutMs = 10_000
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await f()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error("timed out waiting")
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe("createRuntime", () => {
  it("runs a turn and answers status, sessions and reset", { timeout: 30_000 }, async () => {
    const dir = await tempDir()
    const rt = await start({ ...small, sessionsDir: dir })
    const result = await rt.turn("chat:1", "hello there")
    expect(result).toMatchObject({
      sessionKey: "chat:1",
      outcome: "completed",
      reply: expect.stringContaining("hello there"),
      compaction: { state: "none" },
      status: { sessionKey: "chat:1", generation: 1, compactionCount: 0 }
    })
    const status = await rt.status("chat:1")
    expect(status).toMatchObject({
      sessionId: result.sessionId,
      compaction: { state: "idle" },
      lastRun: { runId: result.runId, outcome: "completed" }
    })
    expect(status?.tokens.fresh).toBe(true)
    expect((await rt.sessions()).map((s) => s.sessionKey)).toEqual(["chat:1"])
    const reset = await rt.reset("chat:1")
    expect(reset.generation).toBe(2)
    expect(reset.sessionId).not.toBe(result.sessionId)
    expect(reset.compactionCount).toBe(0)
  })

  it("answers undefined for an unknown status and rejects other calls with a named Error", {
    timeout: 30_000
  }, async () => {
    const rt = await start({ ...small, sessionsDir: await tempDir() })
    expect(await rt.status("nobody")).toBeUndefined()
    for (const call of [
      () => rt.compact("nobody"),
      () => rt.cancelCompaction("nobody"),
      () => rt.reset("nobody")
    ]) {
      const error = await call().then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).toBeInstanceOf(Error)
      expect(error).toMatchObject({ name: "SessionNotFound", message: expect.stringContaining("nobody") })
    }
    const invalid = await rt.turn("bad key!", "hi").then(
      () => undefined,
      (e: unknown) => e
    )
    expect(invalid).toBeInstanceOf(Error)
    expect(invalid).toMatchObject({ name: "InvalidSessionKey" })
  })

  it("rejects a turn past maxTurns with an Overloaded error that says when to retry", {
    timeout: 30_000
  }, async () => {
    const rt = await start({ ...small, sessionsDir: await tempDir(), maxTurns: 2, localReplyMs: 300 })
    const settled = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => rt.turn(`over-${i}`, "hi")))
    const refused = settled.flatMap((s) => (s.status === "rejected" ? [s.reason as unknown] : []))
    expect(settled.filter((s) => s.status === "fulfilled")).toHaveLength(2)
    expect(refused).toHaveLength(4)
    for (const error of refused) {
      expect(error).toBeInstanceOf(ConvergeError)
      expect(error).toMatchObject({
        name: "Overloaded",
        message: expect.stringContaining("2 turns in flight")
      })
      expect((error as ConvergeError).retryAfterMs).toBeGreaterThan(0)
    }
    expect((await rt.turn("over-0", "again")).outcome).toBe("completed")
  })

  it("rejects a bad option with a ConfigError naming it and its value", async () => {
    const error = await createRuntime({ turnTimeoutMs: -5, sessionsDir: await tempDir() }).then(
      () => undefined,
      (e: unknown) => e
    )
    expect(error).toBeInstanceOf(Error)
    expect(error).toMatchObject({ name: "ConfigError", message: expect.stringMatching(/turnTimeoutMs.*-5/) })
  })

  it("delivers events to a subscriber until it unsubscribes", { timeout: 30_000 }, async () => {
    const rt = await start({ ...small, sessionsDir: await tempDir() })
    const seen: Array<LifecycleEvent> = []
    const others: Array<LifecycleEvent> = []
    const stop = rt.subscribe((event) => seen.push(event), { sessionKey: "a" })
    rt.subscribe((event) => others.push(event), { sessionKey: "b" })
    const first = await rt.turn("a", "one")
    await waitFor(() => (seen.some((e) => e._tag === "TurnFinished") ? true : undefined))
    expect(seen.map((e) => e._tag)).toEqual(["TurnStarted", "UsageObserved", "TurnFinished"])
    expect(seen.every((e) => e.sessionKey === "a" && e.sessionId === first.sessionId)).toBe(true)
    stop()
    await rt.turn("a", "two")
    await rt.turn("b", "three")
    await waitFor(() => (others.some((e) => e._tag === "TurnFinished") ? true : undefined))
    expect(seen).toHaveLength(3)
    expect(others.every((e) => e.sessionKey === "b")).toBe(true)
  })

  it("a listener that throws keeps receiving events", { timeout: 30_000 }, async () => {
    const rt = await start({ ...small, sessionsDir: await tempDir() })
    const seen: Array<string> = []
    rt.subscribe((event) => {
      seen.push(event._tag)
      throw new Error("listener bug")
    })
    await rt.turn("throws", "one")
    await rt.turn("throws", "two")
    await waitFor(() => (seen.filter((t) => t === "TurnFinished").length === 2 ? true : undefined))
    expect(seen).toHaveLength(6)
  })

  it("a turn that times out leaves its compaction running; it is counted and published once", {
    timeout: 30_000
  }, async () => {
    const dir = await tempDir()
    const rt = await start({ ...small, sessionsDir: dir, localSummaryMs: 600 })
    await fill(rt, "late")
    const events: Array<LifecycleEvent> = []
    rt.subscribe((event) => events.push(event), { sessionKey: "late" })
    const result = await rt.turn("late", paragraph(9), { timeoutMs: 150 })
    expect(result).toMatchObject({ outcome: "timed_out", timeout: "turn", compaction: { state: "pending" } })
    const compactionId = result.compaction.compactionId
    expect(compactionId).toBeDefined()
    const status = await waitFor(async () => {
      const s = await rt.status("late")
      return s !== undefined && s.compactionCount === 1 ? s : undefined
    })
    const lines = await transcriptLines(dir, result.sessionId)
    const seq = lines.slice(1).findIndex((line) => line.type === "compaction")
    expect(status.lastCompaction).toMatchObject({ compactionId, ordinal: 1 })
    expect(status.tokens).toMatchObject({
      fresh: true,
      asOfSeq: seq,
      context: status.lastCompaction?.tokensAfter
    })
    await waitFor(() => (events.some((e) => e._tag === "CompactionCompleted") ? true : undefined))
    expect(events.filter((e) => e._tag === "CompactionCompleted")).toHaveLength(1)
  })

  it("cancelCompaction stops a running compaction before its commit", { timeout: 30_000 }, async () => {
    const dir = await tempDir()
    const rt = await start({ ...small, sessionsDir: dir, localSummaryMs: 5_000 })
    await fill(rt, "cancel")
    const events: Array<LifecycleEvent> = []
    rt.subscribe((event) => events.push(event), { sessionKey: "cancel" })
    const pending = await rt.compact("cancel", { waitMs: 0 })
    expect(pending).toMatchObject({
      state: "pending",
      joined: false,
      status: { compaction: { state: "running" } }
    })
    const status = await rt.cancelCompaction("cancel")
    expect(status.compaction.state).toBe("idle")
    expect(status.compactionCount).toBe(0)
    const failed = await waitFor(() => events.find((e) => e._tag === "CompactionFailed"))
    expect(failed).toMatchObject({ compactionId: pending.compactionId, reason: "cancelled" })
    const lines = await transcriptLines(dir, status.sessionId)
    expect(lines.some((line) => line.type === "compaction")).toBe(false)
  })

  it("dispose while a compaction runs interrupts it at drainTimeoutMs: nothing written, no partial line", {
    timeout: 30_000
  }, async () => {
    const dir = await tempDir()
    const rt = await createRuntime({
      ...small,
      sessionsDir: dir,
      localSummaryMs: 10_000,
      drainTimeoutMs: 300
    })
    await fill(rt, "drain")
    const pending = await rt.compact("drain", { waitMs: 0 })
    expect(pending.state).toBe("pending")
    const started = Date.now()
    await rt.dispose()
    const elapsed = Date.now() - started
    expect(elapsed).toBeGreaterThanOrEqual(250)
    expect(elapsed).toBeLessThan(300 + 2_000)
    const text = await readFile(join(dir, `${pending.status.sessionId}.jsonl`), "utf8")
    expect(text.endsWith("\n")).toBe(true)
    expect(text.includes('"type":"compaction"')).toBe(false)
    const again = await start({ ...small, sessionsDir: dir })
    expect(await again.status("drain")).toMatchObject({ compactionCount: 0, compaction: { state: "idle" } })
  })

  it("dispose while a compaction runs lets it commit within drainTimeoutMs, then flushes", {
    timeout: 30_000
  }, async () => {
    const dir = await tempDir()
    const rt = await createRuntime({ ...small, sessionsDir: dir, localSummaryMs: 400, drainTimeoutMs: 5_000 })
    await fill(rt, "finish")
    const pending = await rt.compact("finish", { waitMs: 0 })
    expect(pending.state).toBe("pending")
    const started = Date.now()
    await rt.dispose()
    expect(Date.now() - started).toBeLessThan(5_000)
    const file = JSON.parse(await readFile(join(dir, "sessions.json"), "utf8")) as Record<
      string,
      { compactionCount?: number; lastCompaction?: { compactionId: string } }
    >
    expect(file.finish).toMatchObject({
      compactionCount: 1,
      lastCompaction: { compactionId: pending.compactionId }
    })
    const again = await start({ ...small, sessionsDir: dir })
    expect(await again.status("finish")).toMatchObject({ compactionCount: 1, tokens: { fresh: true } })
  })

  it("dispose is idempotent; calls after it reject with an Error saying so", {
    timeout: 30_000
  }, async () => {
    const rt = await createRuntime({ ...small, sessionsDir: await tempDir() })
    await rt.dispose()
    await rt.dispose()
    const error = await rt.turn("after", "hello").then(
      () => undefined,
      (e: unknown) => e
    )
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).name).toBe("Disposed")
    expect((error as Error).message).toMatch(/disposed/)
    expect(() => rt.subscribe(() => {})).toThrow(/disposed/)
  })

  it("runs a turn once per idempotency key; a repeat waits for and returns the first result", {
    timeout: 30_000
  }, async () => {
    const dir = await tempDir()
    const rt = await start({ ...small, sessionsDir: dir, localReplyMs: 300 })
    const [a, b] = await Promise.all([
      rt.turn("idem", "only once", { idempotencyKey: "k-1" }),
      new Promise((r) => setTimeout(r, 50)).then(() =>
        rt.turn("idem", "only once", { idempotencyKey: "k-1" })
      )
    ])
    expect(b).toEqual(a)
    const lines = await transcriptLines(dir, a.sessionId)
    expect(lines.filter((line) => line.type === "message")).toHaveLength(2)
  })
})
