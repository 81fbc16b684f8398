/**
 * The session store on PostgreSQL: `SessionStore` (memory, merges only, written behind)
 * over a backend whose persist step is, per changed key, one `INSERT … ON CONFLICT DO UPDATE`
 * that joins the entry into the stored row (`mergeSql`). Joins commute, so gateways flushing
 * the same session in any order cannot lose each other's updates, and no flush reads a row
 * to write it back.
 */
import { type SessionEntry, StorageError } from "@converge/domain"
import {
  type Backend,
  isOwnedField,
  jsonEqual,
  normalizeForeignReset,
  parseSessionsFile,
  SessionStore
} from "@converge/store"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, HashMap, type Layer, Option } from "effect"
import { storageError, transactionErrors } from "./Database.js"
import { fromRow, mergeCallSql, type SessionRow, toRow } from "./sessionRow.js"

/** Options of the PostgreSQL store. */
export interface PgStoreOptions {
  /** For error messages (masked). */
  readonly url: string
  /** A flush starts at most this long after the first unflushed merge (default 50). */
  readonly flushIntervalMs?: number
}

export const SESSIONS_TABLE = "converge_sessions"

/**
 * The patch that carries `entry` into the row: every owned field (the join cannot lower
 * them), and the other fields only where this process changed them since it last saw the
 * row — so a field another gateway set is not overwritten by a stale copy.
 */
export const patchFor = (entry: SessionEntry, base: SessionEntry | undefined): SessionEntry => {
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(entry)) {
    const v = entry[k]
    if (v === undefined) continue
    if (isOwnedField(k) || base === undefined || !jsonEqual(v, base[k])) out[k] = v
  }
  return out as SessionEntry
}

/** The backend: rows of `converge_sessions`. */
export const makeBackend = (
  options: PgStoreOptions
): Effect.Effect<Backend, StorageError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const statement = mergeCallSql
    /** Each key's row as this process last read or wrote it: the base of the field rule. */
    const seen = new Map<string, SessionEntry>()
    const fail = storageError(options.url, "session store on")

    const load = sql<SessionRow>`SELECT * FROM ${sql(SESSIONS_TABLE)} ORDER BY session_key`.pipe(
      Effect.map((rows) => {
        const entries = rows.map((row) => {
          const entry = fromRow(row)
          seen.set(String(row.session_key), entry)
          return [String(row.session_key), entry] as const
        })
        return { entries, corrupt: Option.none(), unsaved: [] }
      }),
      Effect.mapError(fail)
    )

    const persist: Backend["persist"] = (snapshot, dirty) =>
      Effect.gen(function* () {
        const stored: Array<readonly [string, SessionEntry]> = []
        for (const [key] of dirty) {
          const entry = HashMap.get(snapshot, key)
          if (Option.isNone(entry)) continue
          const params = toRow(key, patchFor(entry.value, seen.get(key)))
          const rows = yield* sql.unsafe<SessionRow>(statement, params as Array<unknown>)
          const row = rows[0]
          if (row !== undefined) stored.push([key, fromRow(row)])
        }
        return stored
      }).pipe(
        sql.withTransaction,
        transactionErrors,
        Effect.map((stored) => {
          for (const [key, entry] of stored) seen.set(key, entry)
          return {
            stored: Option.some(HashMap.fromIterable(stored)),
            complete: false,
            wrote: stored.length > 0,
            corrupt: Option.none()
          }
        }),
        Effect.mapError((e) => (e instanceof StorageError ? e : fail(e)))
      )

    // Other gateways write the rows too: a session this one is about to work on is read again.
    const reload: NonNullable<Backend["reload"]> = (key) =>
      sql<SessionRow>`SELECT * FROM ${sql(SESSIONS_TABLE)} WHERE session_key = ${key}`.pipe(
        Effect.map((rows) => {
          const row = rows[0]
          if (row === undefined) return Option.none()
          const entry = fromRow(row)
          seen.set(key, entry)
          return Option.some(entry)
        }),
        Effect.mapError(fail)
      )

    return {
      load,
      persist,
      reload,
      unreadable: Effect.succeed(new Map()),
      flushIntervalMs: Option.some(options.flushIntervalMs ?? 50)
    }
  })

/** `SessionStore` on the database of `SqlClient` (migrated: see `Database.layer`). */
export const layerPgStore = (
  options: PgStoreOptions
): Layer.Layer<SessionStore, StorageError, SqlClient.SqlClient> =>
  SessionStore.layerBackend(makeBackend(options))

/** What an import did. */
export interface Imported {
  /** Entries merged into the database. */
  readonly merged: number
  /** Of those, the rows the import changed (0 on a second import of the same file). */
  readonly changed: number
  /** Keys whose value is not a session entry: not imported, and why. */
  readonly unreadable: ReadonlyArray<{ readonly key: string; readonly problem: string }>
}

/**
 * Merges the entries of a `sessions.json` text into the database, each by the merge
 * statement: an entry reset by a tool that knows no generations is normalized against the
 * row it resets first (DESIGN §2.4). Idempotent: importing the same file again changes nothing.
 * A text that is not a sessions file fails with the reason, and nothing is written.
 */
export const importSessionsFile = (
  url: string,
  file: string,
  text: string
): Effect.Effect<Imported, StorageError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const parsed = parseSessionsFile(text)
    if (parsed._tag === "Unreadable")
      return yield* new StorageError({ path: file, message: `cannot import ${file}: ${parsed.problem}` })
    const sql = yield* SqlClient.SqlClient
    const statement = mergeCallSql
    const fail = storageError(url, "cannot import into")
    let changed = 0
    yield* sql
      .withTransaction(
        Effect.forEach(
          parsed.entries,
          ([key, raw]) =>
            Effect.gen(function* () {
              const rows =
                yield* sql<SessionRow>`SELECT * FROM ${sql(SESSIONS_TABLE)} WHERE session_key = ${key} FOR UPDATE`
              const before = rows[0] === undefined ? undefined : fromRow(rows[0])
              const entry = normalizeForeignReset(raw, before?.sessionId, before?.generation)
              const after = yield* sql.unsafe<SessionRow>(statement, toRow(key, entry) as Array<unknown>)
              if (before === undefined || !jsonEqual(before, fromRow(after[0]!))) changed++
            }),
          { discard: true }
        )
      )
      .pipe(transactionErrors, Effect.mapError(fail))
    return {
      merged: parsed.entries.length,
      changed,
      unreadable: parsed.unreadable.map((u) => ({ key: u.key, problem: u.problem }))
    }
  })

/** Every stored entry as the text of a `sessions.json` (keys sorted, two-space indent). */
export const exportSessionsFile = (url: string): Effect.Effect<string, StorageError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<SessionRow>`SELECT * FROM ${sql(SESSIONS_TABLE)} ORDER BY session_key`.pipe(
      Effect.map((rows) => {
        const out: Record<string, SessionEntry> = {}
        const keyed = rows.map((row) => [String(row.session_key), row] as const)
        keyed.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        for (const [key, row] of keyed) out[key] = fromRow(row)
        return `${JSON.stringify(out, null, 2)}\n`
      }),
      Effect.mapError(storageError(url, "cannot export from"))
    )
  )
