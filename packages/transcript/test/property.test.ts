/**
 * For any sequence of appends and compaction appends (ids repeat), with restarts of the
 * runtime in between: the fold equals a reference model, and `created` is true exactly once
 * per compaction id.
 */
import { MemoryFileSystem } from "@converge/testkit"
import { describe, expect, it } from "@effect/vitest"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Context, Effect, Exit, FastCheck as fc, Layer, Scope } from "effect"
import { foldTranscript, type NewEntry, Transcript } from "../src/index.js"

type Piece =
  | { readonly _tag: "user" }
  | {
      readonly _tag: "assistant"
      readonly input: number
      readonly output: number
      readonly total: boolean
      readonly promptBack: number | undefined
    }
  | { readonly _tag: "custom" }

type Command =
  | { readonly _tag: "append"; readonly pieces: ReadonlyArray<Piece> }
  | {
      readonly _tag: "compact"
      readonly id: number
      readonly cut: number
      readonly tokensAfter: number | undefined
    }
  | { readonly _tag: "restart" }

const piece: fc.Arbitrary<Piece> = fc.oneof(
  fc.constant({ _tag: "user" as const }),
  fc.record({
    _tag: fc.constant("assistant" as const),
    input: fc.nat({ max: 5000 }),
    output: fc.nat({ max: 500 }),
    total: fc.boolean(),
    promptBack: fc.option(fc.nat({ max: 3 }), { nil: undefined })
  }),
  fc.constant({ _tag: "custom" as const })
)

const command: fc.Arbitrary<Command> = fc.oneof(
  {
    arbitrary: fc.record({
      _tag: fc.constant("append" as const),
      pieces: fc.array(piece, { minLength: 1, maxLength: 3 })
    }),
    weight: 6
  },
  {
    arbitrary: fc.record({
      _tag: fc.constant("compact" as const),
      id: fc.nat({ max: 3 }),
      cut: fc.double({ min: 0, max: 0.999, noNaN: true }),
      tokensAfter: fc.option(fc.nat({ max: 9000 }), { nil: undefined })
    }),
    weight: 3
  },
  { arbitrary: fc.constant({ _tag: "restart" as const }), weight: 1 }
)

interface ModelLine {
  readonly kind: "message" | "compaction" | "custom"
  readonly role?: string
  readonly usage?: { readonly input: number; readonly output: number; readonly totalTokens?: number }
  readonly promptSeq?: number
  readonly compactionId?: string
  readonly tokensAfter?: number
}

/** What the fold must say about `lines`, computed the plain way. */
const reference = (lines: ReadonlyArray<ModelLine>) => {
  const candidates: Array<{ context: number; input?: number; output?: number; asOfSeq: number }> = []
  let lastMessage = -1
  lines.forEach((line, seq) => {
    if (line.kind === "message" && line.role === "assistant" && line.usage !== undefined) {
      const u = line.usage
      candidates.push({
        context: u.totalTokens ?? u.input + u.output,
        input: u.input,
        output: u.output,
        asOfSeq: line.promptSeq ?? lastMessage
      })
    }
    if (line.kind === "message") lastMessage = seq
    if (line.kind === "compaction" && line.tokensAfter !== undefined)
      candidates.push({ context: line.tokensAfter, asOfSeq: seq })
  })
  const key = (c: (typeof candidates)[number]) =>
    JSON.stringify([c.asOfSeq, c.context, c.input ?? null, c.output ?? null])
  const best = candidates.reduce<(typeof candidates)[number] | undefined>(
    (a, c) =>
      a === undefined || c.asOfSeq > a.asOfSeq || (c.asOfSeq === a.asOfSeq && key(c) > key(a)) ? c : a,
    undefined
  )
  const compactions = lines.flatMap((l, seq) => (l.kind === "compaction" ? [{ ...l, seq }] : []))
  const last = compactions[compactions.length - 1]
  return {
    compactionIndex: compactions.length,
    lastCompaction:
      last === undefined ? undefined : { id: last.compactionId, index: compactions.length, seq: last.seq },
    snapshot: best,
    lastSeq: lines.length - 1
  }
}

const DIR = "/s"
const ID = "prop-session"

const program = (commands: ReadonlyArray<Command>) =>
  Effect.gen(function* () {
    const memory = yield* MemoryFileSystem.make
    const layer = Transcript.layer({ sessionsDir: DIR, resumeMinBytes: 1 }).pipe(
      Layer.provide(Layer.merge(Layer.succeed(FileSystem.FileSystem, memory), Path.layer))
    )
    const model: Array<ModelLine> = []
    const created = new Map<string, number>()
    // A restart closes the runtime (releasing its lease, as a stopping process does) and builds another.
    let scope = yield* Scope.make()
    let t = Context.get(yield* Layer.buildWithScope(layer, scope), Transcript)
    for (const cmd of commands) {
      if (cmd._tag === "restart") {
        yield* Scope.close(scope, Exit.void)
        scope = yield* Scope.make()
        t = Context.get(yield* Layer.buildWithScope(layer, scope), Transcript)
        continue
      }
      if (cmd._tag === "append") {
        const entries: Array<NewEntry> = []
        const lines: Array<ModelLine> = []
        for (const p of cmd.pieces) {
          if (p._tag === "user") {
            entries.push({ type: "message", message: { role: "user", content: "q".repeat(8) } })
            lines.push({ kind: "message", role: "user" })
          } else if (p._tag === "custom") {
            entries.push({ type: "custom", customType: "x" })
            lines.push({ kind: "custom" })
          } else {
            const usage = {
              input: p.input,
              output: p.output,
              ...(p.total ? { totalTokens: p.input + p.output + 7 } : {})
            }
            const promptSeq =
              p.promptBack === undefined ? undefined : model.length + lines.length - 1 - p.promptBack
            entries.push({
              type: "message",
              ...(promptSeq !== undefined ? { promptSeq } : {}),
              message: { role: "assistant", content: "a", usage }
            })
            lines.push({
              kind: "message",
              role: "assistant",
              usage,
              ...(promptSeq !== undefined ? { promptSeq } : {})
            })
          }
        }
        const appended = yield* t.append(ID, entries)
        expect(appended.map((a) => a.seq)).toEqual(lines.map((_, i) => model.length + i))
        model.push(...lines)
        continue
      }
      const context = yield* t.buildContext(ID)
      if (context.entries.length === 0) continue
      const firstKept = context.entries[Math.floor(cmd.cut * context.entries.length)]!.entry.id as string
      const compactionId = `cmp_${cmd.id}`
      const result = yield* t.appendCompaction(ID, {
        compactionId,
        firstKeptEntryId: firstKept,
        build: () => ({
          summary: "s",
          tokensBefore: 1,
          ...(cmd.tokensAfter !== undefined ? { tokensAfter: cmd.tokensAfter } : {})
        })
      })
      const seenAt = created.get(compactionId)
      expect(result.created).toBe(seenAt === undefined)
      if (seenAt === undefined) {
        created.set(compactionId, model.length)
        expect(result.seq).toBe(model.length)
        model.push({
          kind: "compaction",
          compactionId,
          ...(cmd.tokensAfter !== undefined ? { tokensAfter: cmd.tokensAfter } : {})
        })
      } else expect(result.seq).toBe(seenAt)
      const index = model.slice(0, result.seq + 1).filter((l) => l.kind === "compaction").length
      expect(result.index).toBe(index)
    }
    const expected = reference(model)
    const fold = yield* t.fold(ID)
    expect({
      compactionIndex: fold.compactionIndex,
      lastCompaction:
        fold.lastCompaction === undefined
          ? undefined
          : { id: fold.lastCompaction.id, index: fold.lastCompaction.index, seq: fold.lastCompaction.seq },
      snapshot: fold.snapshot,
      lastSeq: fold.lastSeq
    }).toEqual(JSON.parse(JSON.stringify(expected)))
    if (model.length === 0) return yield* Scope.close(scope, Exit.void)
    expect(fold.problems).toEqual([])
    // The service's fold, the pure fold of the file and a fresh runtime's resumed fold agree.
    const text = yield* memory.readFileString(`${DIR}/${ID}.jsonl`)
    expect(fold).toEqual(foldTranscript(ID, text))
    yield* Scope.close(scope, Exit.void)
    const fresh = Context.get(yield* Layer.build(layer), Transcript)
    expect(yield* fresh.fold(ID)).toEqual(fold)
  })

describe("fold against a reference model", () => {
  it.effect.prop(
    "any appends and compaction appends, repeated ids and restarts included",
    [fc.array(command, { minLength: 1, maxLength: 25 })],
    ([commands]) => Effect.scoped(program(commands)),
    { timeout: 40_000, fastCheck: { numRuns: 50 } }
  )
})
