import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { SessionEntry, SessionsFile, TranscriptLine } from "../src/index.js"

const fixtureDir = path.resolve(import.meta.dirname, "../../../test/fixtures/openclaw-sessions")

const decodeEntry = Schema.decodeUnknownSync(SessionEntry)
const encodeEntry = Schema.encodeSync(SessionEntry)
const decodeLine = Schema.decodeUnknownEither(TranscriptLine)
const encodeLine = Schema.encodeSync(TranscriptLine)

/** Splits a transcript into complete lines and a torn tail (no newline after the last byte). */
const splitLines = (text: string) => {
  const complete = text.endsWith("\n")
  const lines = text.split("\n")
  const tail = lines.pop() ?? ""
  return { lines, torn: complete ? undefined : tail }
}

describe("OpenClaw fixtures", () => {
  it("every sessions.json entry decodes and encodes back to deep-equal JSON", () => {
    const raw = JSON.parse(fs.readFileSync(path.join(fixtureDir, "sessions.json"), "utf8")) as Record<
      string,
      unknown
    >
    expect(Object.keys(raw).length).toBe(3)
    for (const [key, value] of Object.entries(raw)) {
      const decoded = decodeEntry(value)
      expect(JSON.parse(JSON.stringify(encodeEntry(decoded))), key).toEqual(value)
    }
    const whole = Schema.decodeUnknownSync(SessionsFile)(raw)
    expect(whole["agent:main:main"]?.compactionCount).toBe(1)
  })

  it("unknown fields survive, nested objects and non-ASCII keys included", () => {
    const value = {
      sessionId: "abc",
      compactionCount: 2,
      deliveryContext: { channel: "telegram", nested: { deep: [1, { x: "y" }] } },
      "größe-ключ-鍵": { ü: true },
      lastRun: { runId: "r1", outcome: "completed", at: 5, seq: 3, extra: "kept" }
    }
    expect(encodeEntry(decodeEntry(value))).toEqual(value)
  })

  it("every complete transcript line decodes and encodes back; the torn last line is reported as torn", () => {
    const files = fs.readdirSync(fixtureDir).filter((f) => f.endsWith(".jsonl"))
    expect(files.length).toBe(2)
    const torn: Array<string> = []
    let lines = 0
    for (const file of files) {
      const split = splitLines(fs.readFileSync(path.join(fixtureDir, file), "utf8"))
      if (split.torn !== undefined) torn.push(file)
      for (const line of split.lines) {
        const json = JSON.parse(line) as unknown
        const decoded = decodeLine(json)
        expect(Either.isRight(decoded), line.slice(0, 80)).toBe(true)
        if (Either.isRight(decoded)) expect(encodeLine(decoded.right)).toEqual(json)
        lines++
      }
      if (split.torn !== undefined) expect(() => JSON.parse(split.torn as string)).toThrow()
    }
    expect(torn).toEqual(["9b8e7d6c-5a4b-4c3d-8e2f-1a0b9c8d7e6f.jsonl"])
    expect(lines).toBeGreaterThan(40)
  })

  it("keeps entries of types it does not know, as they are", () => {
    const line = { type: "branch_summary", id: "x1", parentId: "x0", fromId: "a", summary: "s", 日本: 1 }
    const decoded = decodeLine(line)
    expect(Either.isRight(decoded)).toBe(true)
    if (Either.isRight(decoded)) expect(encodeLine(decoded.right)).toEqual(line)
  })

  it("reads Converge's own additions: sessionKey, promptSeq, compactionId, tokensAfter", () => {
    const header = { type: "session", version: 3, id: "s1", timestamp: "t", cwd: "/", sessionKey: "agent:x" }
    const reply = {
      type: "message",
      id: "m2",
      parentId: "m1",
      timestamp: "t",
      promptSeq: 0,
      message: { role: "assistant", content: [{ type: "text", text: "hi" }], usage: { input: 5, output: 2 } }
    }
    const compaction = {
      type: "compaction",
      id: "c1",
      parentId: "m2",
      timestamp: "t",
      summary: "s",
      firstKeptEntryId: "m2",
      tokensBefore: 9,
      compactionId: "cmp_1",
      tokensAfter: 3
    }
    for (const line of [header, reply, compaction]) {
      const decoded = decodeLine(line)
      expect(Either.isRight(decoded)).toBe(true)
      if (Either.isRight(decoded)) expect(encodeLine(decoded.right)).toEqual(line)
    }
  })
})
