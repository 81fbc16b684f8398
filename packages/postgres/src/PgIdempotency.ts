/**
 * Idempotency keys in PostgreSQL: one row per (session key, key) in `converge_idempotency`,
 * shared by every gateway on the database. A claim is one `INSERT … ON CONFLICT DO UPDATE … WHERE`
 * that takes the row only when it is new, expired (24 h after its claim) or held unanswered past
 * its hold (the holder died); otherwise the row's result is read, or, while another gateway
 * still runs the turn, the claim waits for it. A result is written under the claim's token, so a
 * holder whose claim was taken over cannot overwrite the newer one.
 */
import { maskUrl, StorageUnavailable, TurnResult } from "@converge/domain"
import { type Claim, IDEMPOTENCY_TTL_MS, IdempotencyRecord } from "@converge/runner"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Duration, Effect, Layer, Schedule, Schema } from "effect"

export const IDEMPOTENCY_TABLE = "converge_idempotency"

/** Options of the record. */
export interface PgIdempotencyOptions {
  /** For error messages (masked). */
  readonly url: string
  /** How often a claim held by another gateway is looked at again (default 50 ms). */
  readonly pollMs?: number
  /** How often expired keys are deleted (default 10 min). */
  readonly sweepMs?: number
  /**
   * When set, a claim is held this long and renewed while its turn runs (up to the claim's
   * own hold): a holder that died is then noticed within this, not the turn's whole hold.
   * Renewal runs in the layer (`layerPgIdempotency`); unset, a claim holds its whole `holdMs`.
   */
  readonly liveHoldMs?: number
}

interface ClaimRow {
  readonly result: unknown
}

/** A claim of this process whose turn still runs: renewed until `until` (its own hold). */
interface Live {
  readonly sessionKey: string
  readonly key: string
  readonly until: number
}

const encodeResult = Schema.encodeSync(Schema.parseJson(TurnResult))
const decodeResult = Schema.decodeUnknown(TurnResult)

const newToken = (): string => crypto.randomUUID()

/** The record's operations on the database of `SqlClient`. */
export const makeIdempotencyRecord = (
  options: PgIdempotencyOptions,
  live: Map<string, Live> = new Map()
): Effect.Effect<typeof IdempotencyRecord.Service, never, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const table = sql(IDEMPOTENCY_TABLE)
    const pollMs = options.pollMs ?? 50
    const unavailable = (what: string) => (e: SqlError) =>
      new StorageUnavailable({
        message: `idempotency keys on ${maskUrl(options.url)}: cannot ${what}: ${e.message}`,
        retryAfterMs: 1000
      })

    /**
     * Takes the row when it is free to take: `undefined` when it is not; else whether it was
     * taken from a holder whose hold lapsed unanswered (`abandoned`), read from the row as it
     * was before this statement.
     */
    const take = (sessionKey: string, key: string, token: string, now: number, holdMs: number) =>
      sql<{ abandoned: boolean | null }>`
        WITH old AS (
          SELECT claimed_at FROM ${table} WHERE session_key = ${sessionKey} AND key = ${key}
        )
        INSERT INTO ${table} (session_key, key, token, claimed_at, held_until, result)
        VALUES (${sessionKey}, ${key}, ${token}, ${now}, ${now + holdMs}, NULL)
        ON CONFLICT (session_key, key) DO UPDATE SET
          token = EXCLUDED.token, claimed_at = EXCLUDED.claimed_at,
          held_until = EXCLUDED.held_until, result = NULL
        WHERE ${table}.claimed_at <= ${now - IDEMPOTENCY_TTL_MS}
           OR (${table}.result IS NULL AND ${table}.held_until < ${now})
        RETURNING (SELECT claimed_at > ${now - IDEMPOTENCY_TTL_MS} FROM old) AS abandoned`.pipe(
        Effect.map((rows) => (rows[0] === undefined ? undefined : rows[0].abandoned === true))
      )

    const claim = (
      sessionKey: string,
      key: string,
      holdMs: number
    ): Effect.Effect<Claim, StorageUnavailable> =>
      Effect.gen(function* () {
        const token = newToken()
        const held = options.liveHoldMs === undefined ? holdMs : Math.min(holdMs, options.liveHoldMs)
        for (;;) {
          const now = yield* Clock.currentTimeMillis
          const taken = yield* take(sessionKey, key, token, now, held)
          if (taken !== undefined) {
            if (options.liveHoldMs !== undefined) live.set(token, { sessionKey, key, until: now + holdMs })
            return { _tag: taken ? "Abandoned" : "Claimed", token } as const
          }
          const rows = yield* sql<ClaimRow>`
            SELECT result FROM ${table} WHERE session_key = ${sessionKey} AND key = ${key}`
          const row = rows[0]
          if (row === undefined) continue // deleted between the two statements: take it now
          if (row.result !== null) {
            const result = yield* decodeResult(row.result).pipe(Effect.option)
            // A result this version cannot read is not served as an answer: the turn runs again.
            if (result._tag === "Some") return { _tag: "Answered", result: result.value } as const
            yield* sql`DELETE FROM ${table} WHERE session_key = ${sessionKey} AND key = ${key}`
            continue
          }
          // Another gateway runs the turn: its answer comes within its hold.
          yield* Effect.sleep(Duration.millis(pollMs))
        }
      }).pipe(Effect.mapError(unavailable("claim a key")))

    const answer = (sessionKey: string, key: string, token: string, result: TurnResult) =>
      Effect.zipRight(
        Effect.sync(() => live.delete(token)),
        sql`
        UPDATE ${table} SET result = ${encodeResult(result)}::jsonb
        WHERE session_key = ${sessionKey} AND key = ${key} AND token = ${token}`
      ).pipe(Effect.asVoid, Effect.mapError(unavailable("record a result")))

    const release = (sessionKey: string, key: string, token: string) =>
      Effect.zipRight(
        Effect.sync(() => live.delete(token)),
        sql`
        DELETE FROM ${table}
        WHERE session_key = ${sessionKey} AND key = ${key} AND token = ${token} AND result IS NULL`
      ).pipe(Effect.asVoid, Effect.mapError(unavailable("release a key")))

    return { claim, answer, release }
  })

/** Deletes the keys past their 24 h (and not held), every `sweepMs`, while the scope lives. */
const sweep = (options: PgIdempotencyOptions) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const table = sql(IDEMPOTENCY_TABLE)
    const once = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      yield* sql`DELETE FROM ${table} WHERE claimed_at <= ${now - IDEMPOTENCY_TTL_MS} AND held_until < ${now}`
    }).pipe(
      Effect.catchAll((e) =>
        Effect.logWarning(`idempotency keys on ${maskUrl(options.url)}: sweep failed: ${e.message}`)
      )
    )
    yield* Effect.forkScoped(
      Effect.repeat(once, Schedule.spaced(Duration.millis(options.sweepMs ?? 10 * 60_000)))
    )
  })

/** Renews the live claims every third of `liveHoldMs`, each up to its own hold. */
const renew = (options: PgIdempotencyOptions, live: Map<string, Live>) =>
  Effect.gen(function* () {
    const liveHoldMs = options.liveHoldMs
    if (liveHoldMs === undefined) return
    const sql = yield* SqlClient.SqlClient
    const once = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const sessionKeys: Array<string> = []
      const keys: Array<string> = []
      const tokens: Array<string> = []
      for (const [token, claim] of live) {
        if (claim.until <= now) live.delete(token)
        else {
          sessionKeys.push(claim.sessionKey)
          keys.push(claim.key)
          tokens.push(token)
        }
      }
      if (tokens.length === 0) return
      // By primary key, and only while the claim is still this one's.
      yield* sql.unsafe(
        `UPDATE ${IDEMPOTENCY_TABLE} AS t SET held_until = $1
         FROM unnest($2::text[], $3::text[], $4::text[]) AS u(session_key, key, token)
         WHERE t.session_key = u.session_key AND t.key = u.key AND t.token = u.token AND t.result IS NULL`,
        [now + liveHoldMs, sessionKeys, keys, tokens]
      )
    }).pipe(
      Effect.catchAll((e) =>
        Effect.logWarning(`idempotency keys on ${maskUrl(options.url)}: cannot renew claims: ${e.message}`)
      )
    )
    yield* Effect.forkScoped(
      Effect.repeat(once, Schedule.spaced(Duration.millis(Math.max(10, Math.floor(liveHoldMs / 3)))))
    )
  })

/** `IdempotencyRecord` on the database of `SqlClient` (migrated: see `Database.layer`). */
export const layerPgIdempotency = (
  options: PgIdempotencyOptions
): Layer.Layer<IdempotencyRecord, never, SqlClient.SqlClient> => {
  const live = new Map<string, Live>()
  return Layer.scoped(
    IdempotencyRecord,
    Effect.zipLeft(
      makeIdempotencyRecord(options, live),
      Effect.zipRight(sweep(options), renew(options, live))
    )
  )
}
