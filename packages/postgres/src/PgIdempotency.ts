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
}

interface ClaimRow {
  readonly result: unknown
}

const encodeResult = Schema.encodeSync(Schema.parseJson(TurnResult))
const decodeResult = Schema.decodeUnknown(TurnResult)

const newToken = (): string => crypto.randomUUID()

/** The record's operations on the database of `SqlClient`. */
export const makeIdempotencyRecord = (
  options: PgIdempotencyOptions
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

    /** Takes the row when it is free to take; gives whether it did. */
    const take = (sessionKey: string, key: string, token: string, now: number, holdMs: number) =>
      sql`
        INSERT INTO ${table} (session_key, key, token, claimed_at, held_until, result)
        VALUES (${sessionKey}, ${key}, ${token}, ${now}, ${now + holdMs}, NULL)
        ON CONFLICT (session_key, key) DO UPDATE SET
          token = EXCLUDED.token, claimed_at = EXCLUDED.claimed_at,
          held_until = EXCLUDED.held_until, result = NULL
        WHERE ${table}.claimed_at <= ${now - IDEMPOTENCY_TTL_MS}
           OR (${table}.result IS NULL AND ${table}.held_until < ${now})
        RETURNING token`.pipe(Effect.map((rows) => rows.length > 0))

    const claim = (
      sessionKey: string,
      key: string,
      holdMs: number
    ): Effect.Effect<Claim, StorageUnavailable> =>
      Effect.gen(function* () {
        const token = newToken()
        for (;;) {
          const now = yield* Clock.currentTimeMillis
          if (yield* take(sessionKey, key, token, now, holdMs)) return { _tag: "Claimed", token } as const
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
      sql`
        UPDATE ${table} SET result = ${encodeResult(result)}::jsonb
        WHERE session_key = ${sessionKey} AND key = ${key} AND token = ${token}`.pipe(
        Effect.asVoid,
        Effect.mapError(unavailable("record a result"))
      )

    const release = (sessionKey: string, key: string, token: string) =>
      sql`
        DELETE FROM ${table}
        WHERE session_key = ${sessionKey} AND key = ${key} AND token = ${token} AND result IS NULL`.pipe(
        Effect.asVoid,
        Effect.mapError(unavailable("release a key"))
      )

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

/** `IdempotencyRecord` on the database of `SqlClient` (migrated: see `Database.layer`). */
export const layerPgIdempotency = (
  options: PgIdempotencyOptions
): Layer.Layer<IdempotencyRecord, never, SqlClient.SqlClient> =>
  Layer.scoped(IdempotencyRecord, Effect.zipLeft(makeIdempotencyRecord(options), sweep(options)))
