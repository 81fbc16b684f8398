/**
 * `importSessionsFile` / `exportSessionsFile` on a real database: the fixture directory's
 * sessions.json goes in and comes out with the same entries; a second import changes
 * nothing; a file another tool reset (`/new` rewrote the sessionId) is taken as a reset;
 * a file that is not a sessions file is refused with the reason and writes nothing.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { jsonEqual } from "@converge/store"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as Database from "../src/Database.js"
import { exportSessionsFile, importSessionsFile, layerPgStore } from "../src/PgStore.js"
import { SessionStore } from "@converge/store"
import { freshDatabase } from "./db.js"

const fixture = fs.readFileSync(
  path.join(import.meta.dirname, "../../../test/fixtures/openclaw-sessions/sessions.json"),
  "utf8"
)

const onFreshDatabase = <A, E>(body: (url: string) => Effect.Effect<A, E, Database.Client>) =>
  Effect.flatMap(freshDatabase("converge_imp"), ({ url }) =>
    body(url).pipe(Effect.provide(Database.layer({ url, maxConnections: 2 })))
  )

describe("import and export of sessions.json", () => {
  it.scoped("the fixture goes in and comes out the same; a second import changes nothing", () =>
    onFreshDatabase((url) =>
      Effect.gen(function* () {
        const first = yield* importSessionsFile(url, "sessions.json", fixture)
        expect(first.merged).toBeGreaterThan(0)
        expect(first.changed).toBe(first.merged)
        const again = yield* importSessionsFile(url, "sessions.json", fixture)
        expect(again.changed).toBe(0)
        const out = JSON.parse(yield* exportSessionsFile(url))
        const original = JSON.parse(fixture)
        expect(Object.keys(out).sort()).toEqual(Object.keys(original).sort())
        for (const key of Object.keys(original)) {
          // Unowned fields come back as they were; owned ones as the merge normalizes them.
          for (const [field, value] of Object.entries(original[key])) {
            if (["totalTokensFresh"].includes(field)) continue
            expect(jsonEqual(out[key][field], value), `${key}.${field}`).toBe(true)
          }
        }
      })
    )
  )

  it.scoped(
    "a sessionId rewritten by another tool is a reset: a new generation, the counters from its file",
    () =>
      onFreshDatabase((url) =>
        Effect.gen(function* () {
          const before = {
            "agent:main:x": {
              sessionId: "s-old",
              ownedFor: "s-old",
              generation: 2,
              compactionCount: 4,
              model: "m"
            }
          }
          yield* importSessionsFile(url, "a.json", JSON.stringify(before))
          const rewritten = {
            "agent:main:x": { ...before["agent:main:x"], sessionId: "s-new", updatedAt: 5000 }
          }
          yield* importSessionsFile(url, "b.json", JSON.stringify(rewritten))
          const entry = yield* SessionStore.pipe(
            Effect.flatMap((s) => s.get("agent:main:x")),
            Effect.map(Option.getOrThrow),
            Effect.provide(layerPgStore({ url }))
          )
          expect(entry).toMatchObject({
            sessionId: "s-new",
            ownedFor: "s-new",
            generation: 3,
            sessionStartedAt: 5000,
            compactionBase: 4,
            compactionCount: 4,
            model: "m"
          })
        })
      )
  )

  it.scoped("a file that is not a sessions file is refused with the reason; nothing is written", () =>
    onFreshDatabase((url) =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(importSessionsFile(url, "/tmp/x/sessions.json", "[1,2"))
        expect(error.message).toContain("/tmp/x/sessions.json")
        expect(error.message).toContain("not JSON")
        expect(yield* exportSessionsFile(url)).toBe("{}\n")
      })
    )
  )
})
