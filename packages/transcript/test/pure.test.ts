import { TranscriptEntry } from "@converge/domain"
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import {
  compareSnapshots,
  contextOf,
  contextTokens,
  finishFold,
  foldParsed,
  foldText,
  foldTranscript,
  initialFoldState,
  isTranscriptEntry,
  joinSnapshots,
  nextLine,
  parseTranscript,
  type Snapshot
} from "../src/index.js"
import { DM, fixtureDir, MAIN } from "./helpers.js"

const fixture = (id: string) => fs.readFileSync(path.join(fixtureDir, `${id}.jsonl`), "utf8")

describe("parseTranscript", () => {
  it("numbers lines from 0 after the header, malformed included, and reports the torn tail", () => {
    const parsed = parseTranscript(fixture(DM))
    expect(parsed.header?.id).toBe(DM)
    expect(parsed.lines.length).toBe(25)
    expect(parsed.lines.every((l, i) => l.seq === i && l.entry !== undefined)).toBe(true)
    expect(parsed.problems).toMatchObject([{ kind: "torn", line: 27, seq: 25 }])
    const compactions = parsed.lines.filter((l) => l.entry?.type === "compaction").map((l) => l.seq)
    expect(compactions).toEqual([4, 10, 15, 20])
  })

  it("a bad header, an empty line and a non-entry are malformed and keep their seqs", () => {
    const text = ['{"type":"message"}', "", '{"type":"message","id":"a"}', '{"type":"x","id":"b"}', ""].join(
      "\n"
    )
    const parsed = parseTranscript(text)
    expect(parsed.header).toBeUndefined()
    expect(parsed.lines.map((l) => [l.seq, l.entry?.type])).toEqual([
      [0, undefined],
      [1, undefined],
      [2, "x"]
    ])
    expect(parsed.problems.map((p) => [p.kind, p.line])).toEqual([
      ["malformed", 1],
      ["malformed", 2],
      ["malformed", 3]
    ])
  })

  it("a file that is only a torn header is torn at line 1", () => {
    expect(parseTranscript('{"type":"sess').problems).toMatchObject([{ kind: "torn", line: 1 }])
    expect(foldTranscript("x", '{"type":"sess').problems).toMatchObject([{ kind: "torn", line: 1 }])
  })

  const json = fc.jsonValue({ maxDepth: 2 })
  const field = <A>(arb: fc.Arbitrary<A>) =>
    fc.oneof({ arbitrary: arb, weight: 9 }, { arbitrary: json, weight: 1 })
  const candidate = fc.record(
    {
      type: fc.constantFrom("message", "compaction", "custom", "session", "branch_summary", "label"),
      id: field(fc.string({ maxLength: 4 })),
      parentId: field(fc.oneof(fc.constant(null), fc.string({ maxLength: 4 }))),
      timestamp: field(fc.constant("2026-01-01T00:00:00.000Z")),
      message: field(
        fc.record(
          {
            role: field(fc.constantFrom("user", "assistant")),
            content: json,
            usage: field(
              fc.record({ input: field(fc.nat()), totalTokens: field(fc.nat()) }, { requiredKeys: [] })
            ),
            timestamp: field(fc.nat())
          },
          { requiredKeys: [] }
        )
      ),
      promptSeq: field(fc.nat()),
      summary: field(fc.string({ maxLength: 4 })),
      firstKeptEntryId: field(fc.oneof(fc.constant(null), fc.string({ maxLength: 4 }))),
      tokensBefore: field(fc.nat()),
      tokensAfter: field(fc.nat()),
      compactionId: field(fc.string({ maxLength: 4 })),
      customType: field(fc.string({ maxLength: 4 }))
    },
    { requiredKeys: ["type"] }
  )

  it("isTranscriptEntry agrees with the domain schema", () => {
    let valid = 0
    fc.assert(
      fc.property(candidate, (value) => {
        const roundTripped = JSON.parse(JSON.stringify(value)) as unknown
        const expected = Schema.is(TranscriptEntry)(roundTripped)
        if (expected) valid++
        expect(isTranscriptEntry(roundTripped)).toBe(expected)
      }),
      { numRuns: 1000 }
    )
    expect(valid).toBeGreaterThan(100)
  })
})

describe("fold", () => {
  it("gives the fixture README's figures", () => {
    const dm = foldTranscript(DM, fixture(DM))
    expect(dm).toMatchObject({
      compactionIndex: 4,
      lastCompaction: { id: "1002899b", index: 4, seq: 20 },
      snapshot: { context: 12300, input: 12000, output: 300, asOfSeq: 23 },
      lastSeq: 24
    })
    const main = foldTranscript(MAIN, fixture(MAIN))
    expect(main).toMatchObject({
      compactionIndex: 1,
      lastCompaction: { id: "1000f778", index: 1, seq: 7 },
      snapshot: { context: 7500, asOfSeq: 12 },
      lastSeq: 13,
      problems: []
    })
    expect(foldParsed(DM, parseTranscript(fixture(DM)))).toEqual(dm)
  })

  it("takes the greater asOfSeq: a compaction's tokensAfter beats a usage report measured before it", () => {
    const lines = [
      { type: "session", version: 3, id: "s", timestamp: "2026-01-01T00:00:00.000Z" },
      {
        type: "message",
        id: "u",
        parentId: null,
        timestamp: "2026-01-01T00:00:01.000Z",
        message: { role: "user", content: "q" }
      },
      {
        type: "message",
        id: "a",
        parentId: "u",
        timestamp: "2026-01-01T00:00:02.000Z",
        promptSeq: 0,
        message: { role: "assistant", content: "r", usage: { input: 900, output: 100 } }
      },
      {
        type: "compaction",
        id: "c",
        parentId: "a",
        timestamp: "2026-01-01T00:00:03.000Z",
        summary: "s",
        compactionId: "k",
        tokensBefore: 1000,
        tokensAfter: 120
      }
    ]
    const text = lines.map((l) => `${JSON.stringify(l)}\n`).join("")
    expect(foldTranscript("s", text).snapshot).toEqual({ context: 120, asOfSeq: 2 })
    // A reply to a prompt built after the compaction measures more: it wins.
    const after = {
      type: "message",
      id: "b",
      parentId: "c",
      timestamp: "2026-01-01T00:00:04.000Z",
      promptSeq: 3,
      message: { role: "assistant", content: "r", usage: { input: 150, output: 10 } }
    }
    expect(foldTranscript("s", `${text}${JSON.stringify(after)}\n`).snapshot).toEqual({
      context: 160,
      input: 150,
      output: 10,
      asOfSeq: 3
    })
  })

  it("orders snapshots as the store does: asOfSeq, then canonical JSON of [asOfSeq, total, input, output]", () => {
    const a: Snapshot = { context: 9000, asOfSeq: 5 }
    const b: Snapshot = { context: 12300, input: 12000, output: 300, asOfSeq: 5 }
    // "[5,9000,null,null]" > "[5,12300,12000,300]" as strings.
    expect(compareSnapshots(a, b)).toBeGreaterThan(0)
    expect(joinSnapshots(a, b)).toBe(a)
    expect(joinSnapshots(b, a)).toBe(a)
    expect(joinSnapshots({ context: 1, asOfSeq: 6 }, a)).toEqual({ context: 1, asOfSeq: 6 })
  })

  it.prop(
    "folding a text in pieces, from any line boundary, equals folding it whole",
    [fc.integer({ min: 0, max: 26 }), fc.integer({ min: 0, max: 26 })],
    ([x, y]) => {
      const text = fixture(DM)
      const lines = text.split("\n")
      const [i, j] = x <= y ? [x, y] : [y, x]
      const s = initialFoldState(DM)
      const at = (n: number) => lines.slice(0, n).join("\n").length + (n > 0 ? 1 : 0)
      expect(foldText(s, text.slice(0, at(i)), 0)).toBeUndefined()
      expect(nextLine(s)).toBe(i)
      expect(foldText(s, text.slice(at(i), at(j)), nextLine(s))).toBeUndefined()
      const tornProblem = foldText(s, text.slice(at(j)), nextLine(s))
      expect(finishFold(s, tornProblem === undefined ? [] : [tornProblem])).toEqual(foldTranscript(DM, text))
    }
  )
})

describe("context and tokens", () => {
  it("the context of the fixture: the latest summary, kept entries on, compactions and custom entries out", () => {
    const parsed = parseTranscript(fixture(MAIN))
    const entries = parsed.lines.flatMap((l) =>
      l.entry === undefined ? [] : [{ seq: l.seq, entry: l.entry }]
    )
    const context = contextOf(entries)
    expect(context.summary).toContain("Summary #1")
    expect(context.entries.map((e) => e.seq)).toEqual([5, 6, 8, 9, 10, 11, 12, 13])
    expect(context).toMatchObject({ lastSeq: 13, tokens: 7500, compactionSeq: 7 })
  })

  it("estimates characters / 4 without a usage report after the cut, and follows the branch that ends last", () => {
    const m = (id: string, parentId: string | null, role: string, content: string, usage?: object) => ({
      seq: 0,
      entry: {
        type: "message" as const,
        id,
        parentId,
        timestamp: "t",
        message: { role, content, ...(usage ? { usage } : {}) }
      }
    })
    const entries = [
      m("a", null, "user", "x".repeat(40)),
      m("b", "a", "assistant", "y".repeat(40), { totalTokens: 999 }),
      m("dead", "b", "user", "abandoned branch"),
      m("c", "b", "user", "z".repeat(8))
    ].map((e, seq) => ({ ...e, seq }))
    const context = contextOf(entries)
    expect(context.entries.map((e) => e.entry.id)).toEqual(["a", "b", "c"])
    expect(context.tokens).toBe(999 + 2)
    expect(contextTokens("s".repeat(8), context.entries, 1)).toBe(2 + 10 + 10 + 2)
  })
})
