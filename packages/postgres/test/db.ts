/**
 * A database of its own per test file on the machine's PostgreSQL (127.0.0.1:5432, trust
 * auth; `CONVERGE_TEST_DATABASE_URL` names another server), created from `template0` and
 * dropped after.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Effect, Layer, Redacted } from "effect"
import * as Database from "../src/Database.js"

export const serverUrl =
  process.env.CONVERGE_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

const withDatabase = (url: string, name: string): string => {
  const u = new URL(url)
  u.pathname = `/${name}`
  return u.toString()
}

const admin = PgClient.layer({ url: Redacted.make(serverUrl), maxConnections: 1 })

const adminRun = <A>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>) =>
  Effect.flatMap(SqlClient.SqlClient, f).pipe(Effect.provide(admin), Effect.orDie)

/** Creates a fresh database and gives its URL; drops it (with its connections) when the scope closes. */
export const freshDatabase = (prefix = "converge_test") =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const name = `${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 10)}`
      yield* adminRun((sql) => sql.unsafe(`CREATE DATABASE ${name} TEMPLATE template0`))
      // A test database need not wait for the disk at each commit (a crash loses the test anyway).
      yield* adminRun((sql) => sql.unsafe(`ALTER DATABASE ${name} SET synchronous_commit = off`))
      return { name, url: withDatabase(serverUrl, name) }
    }),
    ({ name }) => adminRun((sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  )

/** A fresh database, migrated, for the scope of the layer. */
export const freshDatabaseLayer = (prefix?: string) =>
  Layer.unwrapScoped(
    Effect.map(freshDatabase(prefix), ({ url }) => Database.layer({ url, maxConnections: 8 }))
  )

/** Kills every connection to database `name` but the caller's; gives how many it killed. */
export const terminateConnections = (name: string) =>
  adminRun((sql) =>
    sql<{ n: number }>`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
      WHERE datname = ${name} AND pid <> pg_backend_pid()`.pipe(Effect.map((rows) => rows[0]?.n ?? 0))
  )
