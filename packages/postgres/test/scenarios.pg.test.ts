/**
 * SCENARIOS.md on the PostgreSQL store: the runner's scenario functions unchanged, the
 * session store replaced by `layerPgStore` over a fresh database per scenario (seeded from
 * the scenario's `sessions.json` by `importSessionsFile`, as `converge import` does).
 * Transcripts stay on the in-memory file system of the harness.
 */
import { FileSystem, Path } from "@effect/platform"
import { describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SessionStore } from "@converge/store"
import { Transcript } from "@converge/transcript"
import { trackIo } from "../../runner/test/harness.js"
import { scenarios } from "../../runner/test/scenarios.js"
import * as Database from "../src/Database.js"
import { importSessionsFile, layerPgStore } from "../src/PgStore.js"
import { importTranscriptText, layerPgTranscript } from "../src/PgTranscript.js"
import { freshDatabase } from "./db.js"

// About sessions.json itself, not the store: a corrupt file moved aside (S14), the file two
// processes wrote (S13), the file another tool rewrote (S18; on PostgreSQL that tool's file
// arrives by import, tested in import.test.ts).
const fileOnly = new Set(["S13", "S14", "S18"])

/** The store with its reads of the database (`refresh`) counted as real I/O, for the harness's `settle`. */
const trackedStore = Layer.effect(
  SessionStore,
  Effect.map(SessionStore, (store) =>
    SessionStore.make({ ...store, refresh: (key) => trackIo(store.refresh(key)) })
  )
)

const pgStoreOn =
  (url: string) => (options: { readonly sessionsDir: string; readonly flushIntervalMs: number }) =>
    Layer.unwrapEffect(
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        const path = yield* Path.Path
        const file = path.join(options.sessionsDir, "sessions.json")
        const seed = Effect.flatMap(fs.readFileString(file).pipe(Effect.option), (text) =>
          text._tag === "Some" ? Effect.asVoid(importSessionsFile(url, file, text.value)) : Effect.void
        )
        return trackedStore.pipe(
          Layer.provide(layerPgStore({ url, flushIntervalMs: options.flushIntervalMs })),
          Layer.provide(Layer.effectDiscard(seed)),
          Layer.provideMerge(Database.layer({ url, maxConnections: 4 }))
        )
      })
    ).pipe(Layer.orDie)

describe("scenarios on the PostgreSQL store", () => {
  for (const [name, scenario] of Object.entries(scenarios)) {
    if (fileOnly.has(name.split(" ")[0]!)) continue
    it.scoped(
      name,
      () =>
        Effect.flatMap(freshDatabase("converge_scn"), ({ url }) =>
          scenario({ variant: { name: "pg", realIo: true, store: pgStoreOn(url) } })
        ),
      30_000
    )
  }
})

// The transcript in the database too: the seed `.jsonl` files are imported (as `converge
// import` does). S12 reads the file itself to show nothing was written.
const fileTranscriptOnly = new Set([...fileOnly, "S12"])

/** The transcript with every operation counted as real I/O, so the harness's `settle` waits for it. */
const tracked = Layer.effect(
  Transcript,
  Effect.map(Transcript, (t) =>
    Transcript.make({
      ...t,
      append: (...args) => trackIo(t.append(...args)),
      appendCompaction: (...args) => trackIo(t.appendCompaction(...args)),
      read: (...args) => trackIo(t.read(...args)),
      buildContext: (...args) => trackIo(t.buildContext(...args)),
      fold: (...args) => trackIo(t.fold(...args)),
      exists: (...args) => trackIo(t.exists(...args)),
      list: trackIo(t.list)
    })
  )
)

const pgTranscriptOn = (url: string) => (options: { readonly sessionsDir: string }) =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      const names = yield* fs.readDirectory(options.sessionsDir).pipe(Effect.orElseSucceed(() => []))
      const seed = Effect.forEach(
        names.filter((n) => n.endsWith(".jsonl")),
        (name) =>
          Effect.flatMap(fs.readFileString(path.join(options.sessionsDir, name)), (text) =>
            importTranscriptText(url, name.slice(0, -".jsonl".length), text)
          ),
        { discard: true }
      )
      return tracked.pipe(
        Layer.provide(layerPgTranscript({ url, leaseMs: 10_000 })),
        Layer.provide(Layer.effectDiscard(seed)),
        Layer.provide(Database.layer({ url, maxConnections: 4 }))
      )
    })
  ).pipe(Layer.orDie)

describe("scenarios on the PostgreSQL store and transcript", () => {
  for (const [name, scenario] of Object.entries(scenarios)) {
    if (fileTranscriptOnly.has(name.split(" ")[0]!)) continue
    it.scoped(
      name,
      () =>
        Effect.flatMap(freshDatabase("converge_scn"), ({ url }) =>
          scenario({
            variant: {
              name: "pg-transcript",
              realIo: true,
              store: pgStoreOn(url),
              transcript: pgTranscriptOn(url)
            }
          })
        ),
      30_000
    )
  }
})
