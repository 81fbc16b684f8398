/**
 * The PostgreSQL database of a set of gateways: one `@effect/sql-pg` client from
 * `CONVERGE_DATABASE_URL`, and the schema migrated at start-up. Two gateways starting at
 * once are serialized by a transaction-scoped advisory lock around the migrator, so the
 * second finds the work done.
 */
import { maskUrl, StorageError } from "@converge/domain"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Duration, Effect, Layer, Option, Redacted } from "effect"
import { migrations } from "./migrations.js"

/** Options of the database layer. */
export interface DatabaseOptions {
  /** `postgres://user:password@host:port/database` */
  readonly url: string
  /** Pool size (default 10). */
  readonly maxConnections?: number
  /** How long to wait for a connection before failing (default 5 s). */
  readonly connectTimeoutMs?: number
}

// A fixed advisory-lock number for "migrating Converge's schema" (ASCII "CNVG").
const MIGRATION_LOCK = 0x434e5647

/** Wraps a driver error as the domain's `StorageError`, naming the (masked) URL. */
export const storageError =
  (url: string, what: string) =>
  (e: SqlError): StorageError => {
    const cause = e.cause instanceof Error ? e.cause.message : String(e.cause ?? "")
    const detail = cause === "" || cause === e.message ? e.message : `${e.message}: ${cause}`
    return new StorageError({ path: maskUrl(url), message: `${what} ${maskUrl(url)}: ${detail}` })
  }

/**
 * `@effect/sql`'s `withTransaction` dies when its COMMIT or ROLLBACK fails (the connection was
 * lost at that moment); this gives such a death back as the `SqlError` it is, so a caller can
 * answer it as an error instead of a defect. (Whether a failed COMMIT took effect is unknown:
 * nothing was acknowledged, and the transcript says what was written.)
 */
export const transactionErrors = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R> =>
  Effect.catchSomeDefect(effect, (defect) =>
    defect instanceof SqlError ? Option.some(Effect.fail(defect)) : Option.none()
  )

/** Runs the migrations, one gateway at a time. */
export const migrate = (url: string): Effect.Effect<void, StorageError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const run = Migrator.make({})({ loader: Migrator.fromRecord(migrations), table: "converge_migrations" })
    // The migrator probes for its table with a statement that fails when it is missing, so it
    // cannot run inside a transaction of ours: its table is made first (two gateways creating
    // it at once would collide, hence the lock); its own run then locks that table.
    const table = sql`
      CREATE TABLE IF NOT EXISTS converge_migrations (
        migration_id integer PRIMARY KEY,
        created_at timestamp with time zone NOT NULL DEFAULT now(),
        name text NOT NULL
      )`
    yield* sql
      .withTransaction(Effect.zipRight(sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`, table))
      .pipe(
        Effect.zipRight(run),
        Effect.catchTag("MigrationError", (e) =>
          Effect.fail(
            new StorageError({ path: maskUrl(url), message: `cannot migrate ${maskUrl(url)}: ${e.message}` })
          )
        ),
        Effect.catchTag("SqlError", (e) => Effect.fail(storageError(url, "cannot migrate")(e)))
      )
  })

/** What the database layer provides. */
export type Client = PgClient.PgClient | SqlClient.SqlClient

/** The client of `options.url`, connected (or failed with the masked URL) and migrated. */
export const layer = (
  options: DatabaseOptions
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, StorageError> => {
  const client = PgClient.layer({
    url: Redacted.make(options.url),
    maxConnections: options.maxConnections ?? 10,
    connectTimeout: Duration.millis(options.connectTimeoutMs ?? 5_000),
    applicationName: "converge"
  }).pipe(Layer.catchAll((e) => Layer.fail(storageError(options.url, "cannot connect to")(e))))
  return Layer.provideMerge(Layer.effectDiscard(migrate(options.url)), client)
}
