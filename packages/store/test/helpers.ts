/** Shared pieces of the store tests. */
import * as nodeFs from "node:fs"
import * as nodePath from "node:path"
import { fileURLToPath } from "node:url"
import type { SessionEntry } from "@converge/domain"
import { FileSystem } from "@effect/platform"
import { Chunk, Effect, TestClock } from "effect"

/** The OpenClaw fixture directory of the repo (read-only: tests copy it). */
export const fixtureDir = nodePath.resolve(
  nodePath.dirname(fileURLToPath(import.meta.url)),
  "../../../test/fixtures/openclaw-sessions"
)

/** The fixture's files, by name, as text. */
export const fixtureFiles = (): Record<string, string> =>
  Object.fromEntries(
    nodeFs
      .readdirSync(fixtureDir)
      .map((name) => [name, nodeFs.readFileSync(nodePath.join(fixtureDir, name), "utf8")])
  )

/** Yields until `condition` holds (other fibers run in between); fails after `rounds` yields. */
export const eventually = <E, R>(condition: Effect.Effect<boolean, E, R>, rounds = 500) =>
  Effect.gen(function* () {
    for (let i = 0; i < rounds; i++) {
      if (yield* condition) return
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage("condition not reached")
  })

/** Waits until some fiber sleeps on the TestClock (so an `adjust` will wake it). */
export const awaitSleeper = eventually(Effect.map(TestClock.sleeps(), (s) => Chunk.size(s) > 0))

/** The parsed `sessions.json` of `dir`. */
export const readSessions = (dir: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(`${dir}/sessions.json`)).pipe(
    Effect.map((text): Record<string, SessionEntry> => JSON.parse(text))
  )

/** A version patch for session `id` of generation `generation`. */
export const v = (id: string, generation = 1, sessionStartedAt = 1_000) => ({
  sessionId: id,
  generation,
  sessionStartedAt
})
