/**
 * The session store on PostgreSQL: `SessionStore` (memory, merges only, written behind)
 * over a backend whose persist step is, per changed key, one `INSERT … ON CONFLICT DO UPDATE`
 * that joins the entry into the stored row (`mergeSql`). Joins commute, so gateways flushing
 * the same session in any order cannot lose each other's updates, and no flush reads a row
 * to write it back.
 */
import { type SessionEntry, StorageError } from "@converge/domain"
import { type Backend, isOwnedField, jsonEqual, SessionStore } from "@converge/store"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, HashMap, type Layer, Option } from "effect"
import { storageError } from "./Database.js"
import { fromRow, mergeSql, type SessionRow, toRow } from "./sessionRow.js"

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
    const statement = mergeSql(SESSIONS_TABLE)
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

    return {
      load,
      persist,
      unreadable: Effect.succeed(new Map()),
      flushIntervalMs: Option.some(options.flushIntervalMs ?? 50)
    }
  })

/** `SessionStore` on the database of `SqlClient` (migrated: see `Database.layer`). */
export const layerPgStore = (
  options: PgStoreOptions
): Layer.Layer<SessionStore, StorageError, SqlClient.SqlClient> =>
  SessionStore.layerBackend(makeBackend(options))
