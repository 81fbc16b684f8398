/**
 * Transcripts in and out of the database: each fixture `.jsonl` imported comes back from
 * `exportTranscriptText` byte for byte (but a torn last line); a second import writes nothing;
 * the fold from the rows equals the fold of the file; a gateway that did not import it appends
 * after it. A session leased by one gateway is refused to another until it is given back.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Transcript, foldTranscript } from "@converge/transcript"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as Database from "../src/Database.js"
import {
  exportTranscriptText,
  importTranscriptText,
  layerPgTranscript,
  listTranscripts
} from "../src/PgTranscript.js"
import { freshDatabase } from "./db.js"

const dir = path.join(import.meta.dirname, "../../../test/fixtures/openclaw-sessions")
const fixtures = fs
  .readdirSync(dir)
  .filter((n) => n.endsWith(".jsonl"))
  .map((n) => ({ sessionId: n.slice(0, -".jsonl".length), text: fs.readFileSync(path.join(dir, n), "utf8") }))

describe("import and export of transcripts", () => {
  it.scoped("every fixture goes in and comes out byte for byte; a second import writes nothing", () =>
    Effect.gen(function* () {
      const { url } = yield* freshDatabase("converge_timp")
      yield* Effect.gen(function* () {
        for (const { sessionId, text } of fixtures) {
          const first = yield* importTranscriptText(url, sessionId, text)
          expect(first.inserted).toBeGreaterThan(0)
          expect(first.skipped).toBe(0)
          const again = yield* importTranscriptText(url, sessionId, text)
          expect(again.inserted).toBe(0)
          // A torn last line (a crash mid-write) is not an entry: it is not imported.
          expect(yield* exportTranscriptText(url, sessionId)).toBe(text.slice(0, text.lastIndexOf("\n") + 1))
        }
        expect(yield* listTranscripts(url)).toEqual(fixtures.map((f) => f.sessionId).sort())
        expect(yield* exportTranscriptText(url, "00000000-0000-4000-8000-000000000000")).toBeUndefined()
        // The service folds the rows as the file backend folds the file, and appends after them.
        yield* Effect.gen(function* () {
          const transcript = yield* Transcript
          for (const { sessionId, text } of fixtures) {
            const fromFile = foldTranscript(sessionId, text)
            expect(yield* transcript.fold(sessionId)).toEqual({
              ...fromFile,
              problems: fromFile.problems.filter((p) => p.kind !== "torn")
            })
            const [appended] = yield* transcript.append(sessionId, [
              { type: "message", message: { role: "user", content: "after the import" } }
            ])
            expect(appended?.seq).toBe(fromFile.lastSeq + 1)
            const read = yield* transcript.read(sessionId)
            expect(read.entries.at(-1)?.entry.parentId).toBe(read.entries.at(-2)?.entry.id)
          }
        }).pipe(Effect.provide(layerPgTranscript({ url })))
      }).pipe(Effect.provide(Database.layer({ url, maxConnections: 2 })))
    })
  )

  it.scoped(
    "a session leased by a live gateway answers SessionLeased to another, until it is given back",
    () =>
      Effect.gen(function* () {
        const { url } = yield* freshDatabase("converge_tlease")
        const sessionId = fixtures[0]!.sessionId
        const gateway = (scope: Scope.Scope) =>
          Layer.buildWithScope(
            layerPgTranscript({ url, leaseMs: 60_000 }).pipe(
              Layer.provide(Database.layer({ url, maxConnections: 2 }))
            ),
            scope
          ).pipe(Effect.map((context) => Context.get(context, Transcript)))
        const scopeA = yield* Scope.make()
        const a = yield* gateway(scopeA)
        const b = yield* gateway(yield* Effect.scope)
        const entry = { type: "message", message: { role: "user", content: "hi" } } as const
        yield* a.append(sessionId, [entry])
        const refused = yield* Effect.flip(b.append(sessionId, [entry]))
        expect(refused._tag).toBe("SessionLeased")
        // A gateway that stops gives its leases back: the other takes the session at once.
        yield* Scope.close(scopeA, Exit.void)
        const [taken] = yield* b.append(sessionId, [entry])
        expect(taken?.seq).toBe(1)
      })
  )
})
