/**
 * The cluster's tables on a new database, made by gateways that start at the same moment.
 * Each "gateway" is a pool of its own, as separate processes would have.
 */
import { MessageStorage, RunnerStorage, ShardingConfig } from "@effect/cluster"
import { SqlClient } from "@effect/sql"
import * as PgClient from "@effect/sql-pg/PgClient"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Redacted } from "effect"
import { Cluster } from "../src/index.js"

const serverUrl = process.env.CONVERGE_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

const pool = (url: string) => PgClient.layer({ url: Redacted.make(url), maxConnections: 4 })

const admin = (statement: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)).pipe(Effect.provide(pool(serverUrl)))

const freshDatabase = Effect.acquireRelease(
  Effect.gen(function* () {
    const name = `converge_cluster_${process.pid}_${Math.random().toString(36).slice(2, 10)}`
    yield* admin(`CREATE DATABASE ${name} TEMPLATE template0`)
    const url = new URL(serverUrl)
    url.pathname = `/${name}`
    return { name, url: url.toString() }
  }),
  ({ name }) => Effect.orDie(admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
)

describe("the cluster's tables", () => {
  it.scoped(
    "eight gateways starting at once on a new database all start, and the id columns are widened",
    () =>
      Effect.gen(function* () {
        const { url } = yield* freshDatabase
        const started = yield* Effect.forEach(
          Array.from({ length: 8 }, (_, i) => i),
          (i) =>
            Effect.gen(function* () {
              yield* MessageStorage.MessageStorage
              yield* RunnerStorage.RunnerStorage
              return i
            }).pipe(
              Effect.provide(
                Cluster.layerStorage.pipe(Layer.provide(pool(url)), Layer.provide(ShardingConfig.layer({})))
              ),
              Effect.exit
            ),
          { concurrency: "unbounded" }
        )
        expect(started.filter(Exit.isFailure).map((e) => Cause.pretty(e.cause))).toEqual([])
        const columns = yield* Effect.flatMap(
          SqlClient.SqlClient,
          (sql) => sql<{ column_name: string; n: number }>`
            SELECT column_name, character_maximum_length AS n FROM information_schema.columns
            WHERE table_name = 'cluster_messages' AND column_name IN ('message_id', 'entity_id')
            ORDER BY column_name`
        ).pipe(Effect.provide(pool(url)))
        expect(columns).toEqual([
          { column_name: "entity_id", n: 1024 },
          { column_name: "message_id", n: 1024 }
        ])
      }),
    60_000
  )
})
