/**
 * The database goes away while the store runs: every connection of the gateway is killed
 * (`pg_terminate_backend`, as a restart or failover of the server does). Flushes fail while
 * it is gone and are retried; once it answers again the store flushes by itself, and every
 * merge made meanwhile reaches the row.
 */
import { SessionStore } from "@converge/store"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option, Schedule } from "effect"
import * as Database from "../src/Database.js"
import { layerPgStore } from "../src/PgStore.js"
import { freshDatabase, terminateConnections } from "./db.js"

describe("a connection lost while running", () => {
  it.live(
    "flushes after the connections were killed; nothing merged is lost",
    () =>
      Effect.gen(function* () {
        const { name, url } = yield* freshDatabase("converge_reconnect")
        const layer = layerPgStore({ url, flushIntervalMs: 20 }).pipe(
          Layer.provideMerge(Database.layer({ url, maxConnections: 2 }))
        )
        yield* Effect.gen(function* () {
          const store = yield* SessionStore
          const sql = yield* SqlClient.SqlClient
          const row = (key: string) =>
            Effect.map(
              sql<{
                compaction_count: number
              }>`SELECT compaction_count FROM converge_sessions WHERE session_key = ${key}`,
              (rows) => rows[0]?.compaction_count
            )
          yield* store.merge("agent:main:a", { sessionId: "s-a", generation: 1, compactionCount: 1 })
          yield* store.flush
          expect(yield* row("agent:main:a")).toBe(1)

          const killed = yield* terminateConnections(name)
          expect(killed).toBeGreaterThan(0)
          yield* store.merge("agent:main:a", { sessionId: "s-a", generation: 1, compactionCount: 2 })
          yield* store.merge("agent:main:b", { sessionId: "s-b", generation: 1, compactionCount: 7 })
          // The flusher retries by itself; wait (real time) until the rows say so.
          const both = Effect.flatMap(Effect.all([row("agent:main:a"), row("agent:main:b")]), ([a, b]) =>
            a === 2 && b === 7 ? Effect.void : Effect.fail("not yet" as const)
          )
          yield* both.pipe(
            Effect.catchAll(() => Effect.fail("not yet" as const)),
            Effect.retry(Schedule.spaced("50 millis").pipe(Schedule.upTo("20 seconds")))
          )
          expect(Option.getOrThrow(yield* store.get("agent:main:b")).compactionCount).toBe(7)
          const stats = yield* store.stats
          expect(stats.dirtyKeys).toBe(0)
        }).pipe(Effect.provide(layer))
      }).pipe(Effect.scoped),
    30_000
  )
})
