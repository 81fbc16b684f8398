/**
 * The transcript in PostgreSQL: `Transcript` with the same contract as the file backend
 * (docs/transcript.md), shared by every gateway on the database.
 *
 * - `converge_transcripts`: one row per session (its pi v3 header, the next seq, the last
 *   entry's id); `converge_entries`: one row per entry, keyed by (`session_id`, `seq`), the
 *   entry as `json` — the pi v3 line exactly as written, so an export gives back the same
 *   bytes (`jsonb` would reorder its keys) — and its `compaction_id`, unique per session, so
 *   a compaction is appended once whoever appends it.
 * - `converge_leases`: who may append to a session. Every append takes or renews the lease in
 *   its own transaction, before it locks the session's row and assigns seqs, so an append by
 *   a gateway that lost its lease writes nothing (`SessionLeased`). The lease is renewed in
 *   the background while the session is used, by the database's clock; a dead owner's lease
 *   lapses after `leaseMs` and the next gateway takes it.
 * - Reads fold from the rows, through a bounded per-session cache that only reads the entries
 *   it has not seen (entries are never rewritten); while this process holds the lease, no
 *   one else appends and the cache is exact without a read.
 */
import {
  type CompactionEntry,
  Lru,
  maskUrl,
  type SessionHeader,
  SessionId,
  SessionLeased,
  StorageError,
  type TranscriptEntry
} from "@converge/domain"
import {
  type Appended,
  type AppendOptions,
  type CacheStats,
  type CompactionAppended,
  type CompactionRequest,
  compactionEntry,
  completeEntry,
  contextOf,
  entriesSinceCut,
  type Fold,
  type FoldState,
  finishFold,
  foldEntry,
  foldHeader,
  initialFoldState,
  type NewEntry,
  parseTranscript,
  type SeqEntry,
  sessionHeader,
  Transcript,
  type TranscriptRead,
  timedAppend
} from "@converge/transcript"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Duration, Effect, Either, Layer, Schedule, Schema, type Scope } from "effect"
import { storageError, transactionErrors } from "./Database.js"

/** Options of the PostgreSQL transcript. */
export interface PgTranscriptOptions {
  /** For error messages (masked). */
  readonly url: string
  /** A lease not renewed for this long lapses, and another gateway may take it (default 10 000). */
  readonly leaseMs?: number
  /** A lease nobody used for this long (and nobody `hold`s) is given back (default 3 × `leaseMs`). */
  readonly idleMs?: number
  /** The `cwd` written in new headers (default `process.cwd()`). */
  readonly cwd?: string
  /** Transcripts kept parsed in memory, at most (default 1 000 sessions). */
  readonly cacheSessions?: number
  /** Their estimated memory, at most (default 16 MiB). */
  readonly cacheBytes?: number
}

/** The cached view of one transcript: the rows up to `fold.nextSeq`. */
interface Cached {
  header: SessionHeader | undefined
  readonly entries: Array<SeqEntry>
  readonly fold: FoldState
  bytes: number
}

/** A lease this process holds. */
interface Held {
  /** Until when (this process's clock) the lease is surely still ours: renewed before. */
  sureUntil: number
  lastUsedAt: number
  holders: number
}

interface EntryRow {
  readonly seq: number
  readonly entry: unknown
}

interface HeadRow {
  readonly header: unknown
  readonly next_seq: number
  readonly last_id: string | null
}

const decodeSessionId = Schema.decodeUnknownEither(SessionId)

/** The `compaction_id` column of an entry: its `compactionId` (or `id`) for a compaction, else none. */
const compactionIdOf = (entry: TranscriptEntry): string | null => {
  if (entry.type !== "compaction") return null
  const e = entry as Record<string, unknown>
  return String(e.compactionId ?? e.id)
}

/** In memory, a cached entry takes about this many bytes per byte of its JSON. */
const BYTES_PER_JSON_BYTE = 2

/** The database's clock, in epoch ms: leases are compared on one clock whatever host renews them. */
const NOW_MS = "(extract(epoch from clock_timestamp()) * 1000)"

export const makePgTranscript = (
  options: PgTranscriptOptions
): Effect.Effect<Transcript, never, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const leaseMs = options.leaseMs ?? 10_000
    const idleMs = options.idleMs ?? 3 * leaseMs
    const renewEvery = Math.max(1, Math.floor(leaseMs / 3))
    const cwd = options.cwd ?? process.cwd()
    const owner = crypto.randomUUID()
    const where = `transcripts on ${maskUrl(options.url)}`
    const fail = (what: string) => (e: SqlError) => storageError(options.url, `${what} (transcripts) on`)(e)
    let evictions = 0
    const cache = new Lru<string, Cached>({
      maxEntries: options.cacheSessions ?? 1000,
      maxWeight: options.cacheBytes ?? 16 * 1024 * 1024,
      weigh: (c) => c.bytes,
      onEvict: () => {
        evictions++
      }
    })
    const held = new Map<string, Held>()
    /** One append or read-modify of a session at a time in this process. */
    const locks = new Map<string, Effect.Semaphore>()
    const lockOf = (sessionId: string) => {
      let lock = locks.get(sessionId)
      if (lock === undefined) {
        lock = Effect.unsafeMakeSemaphore(1)
        locks.set(sessionId, lock)
      }
      return lock
    }

    const checkId = (sessionId: string): Effect.Effect<void, StorageError> =>
      Either.isLeft(decodeSessionId(sessionId))
        ? Effect.fail(
            new StorageError({ path: where, message: `not a usable session id ${JSON.stringify(sessionId)}` })
          )
        : Effect.void

    const leased = (sessionId: string) =>
      new SessionLeased({ sessionId, message: `session ${sessionId} is leased by another live gateway` })

    // ---- the cache ----------------------------------------------------------------------

    const emptyCached = (sessionId: string): Cached => ({
      header: undefined,
      entries: [],
      fold: initialFoldState(sessionId),
      bytes: 0
    })

    /** Folds rows (in seq order, from `c.fold.nextSeq` on) into `c`. */
    const absorb = (c: Cached, rows: ReadonlyArray<EntryRow>): void => {
      for (const row of rows) {
        const seq = Number(row.seq)
        if (seq < c.fold.nextSeq) continue
        // A seq with no row (a malformed line of an imported file) takes its seq, as in the file.
        while (c.fold.nextSeq < seq) foldEntry(c.fold, undefined)
        const entry = row.entry as TranscriptEntry
        foldEntry(c.fold, entry)
        c.entries.push({ seq, entry })
        c.bytes += JSON.stringify(entry).length * BYTES_PER_JSON_BYTE
      }
    }

    const setHeader = (c: Cached, header: unknown): void => {
      if (c.header !== undefined || header === null || header === undefined) return
      c.header = header as SessionHeader
      foldHeader(c.fold, c.header)
    }

    /** The transcript as the rows say now (`undefined`: there is none), read incrementally. */
    const current = (sessionId: string): Effect.Effect<Cached | undefined, SqlError> =>
      Effect.gen(function* () {
        const known = cache.get(sessionId)
        const now = yield* Clock.currentTimeMillis
        const lease = held.get(sessionId)
        if (known !== undefined && known.header !== undefined && lease !== undefined && now < lease.sureUntil)
          return known
        const c = known ?? emptyCached(sessionId)
        if (c.header === undefined) {
          const heads = yield* sql<HeadRow>`
            SELECT header, next_seq, last_id FROM converge_transcripts WHERE session_id = ${sessionId}`
          if (heads[0] === undefined) return undefined
          setHeader(c, heads[0].header)
        }
        const rows = yield* sql<EntryRow>`
          SELECT seq, entry FROM converge_entries
          WHERE session_id = ${sessionId} AND seq >= ${c.fold.nextSeq} ORDER BY seq`
        absorb(c, rows)
        cache.set(sessionId, c)
        return c
      })

    // ---- the lease ----------------------------------------------------------------------

    /** Takes or renews the lease (inside the caller's transaction); fails when another live gateway holds it. */
    const takeLease = (sessionId: string): Effect.Effect<void, SessionLeased | SqlError> =>
      Effect.gen(function* () {
        const rows = yield* sql.unsafe<{ owner: string }>(
          `INSERT INTO converge_leases (session_id, owner, expires_at)
           VALUES ($1, $2, ${NOW_MS} + $3)
           ON CONFLICT (session_id) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
           WHERE converge_leases.owner = EXCLUDED.owner OR converge_leases.expires_at < ${NOW_MS}
           RETURNING owner`,
          [sessionId, owner, leaseMs]
        )
        if (rows.length === 0) {
          held.delete(sessionId)
          return yield* Effect.fail(leased(sessionId))
        }
      })

    const noteHeld = (sessionId: string, since: number): void => {
      const lease = held.get(sessionId)
      // Renewed at `since` (or later): ours for `leaseMs` on the database's clock; half of it
      // here leaves room for the clocks' drift and the time the statement took.
      if (lease === undefined)
        held.set(sessionId, { sureUntil: since + leaseMs / 2, lastUsedAt: since, holders: 0 })
      else {
        lease.sureUntil = since + leaseMs / 2
        lease.lastUsedAt = since
      }
    }

    /** Renews the leases in use, gives back the idle ones. */
    const renew = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const keep: Array<string> = []
      const drop: Array<string> = []
      for (const [id, lease] of held)
        (lease.holders > 0 || now - lease.lastUsedAt < idleMs ? keep : drop).push(id)
      if (drop.length > 0) {
        for (const id of drop) held.delete(id)
        yield* sql`DELETE FROM converge_leases WHERE owner = ${owner} AND session_id IN ${sql.in(drop)}`
      }
      if (keep.length > 0) {
        const renewed = yield* sql.unsafe<{ session_id: string }>(
          `UPDATE converge_leases SET expires_at = ${NOW_MS} + $1
           WHERE owner = $2 AND session_id = ANY($3::text[]) RETURNING session_id`,
          [leaseMs, owner, keep]
        )
        const ours = new Set(renewed.map((r) => r.session_id))
        for (const id of keep) {
          const lease = held.get(id)
          if (lease === undefined) continue
          if (ours.has(id)) lease.sureUntil = now + leaseMs / 2
          else held.delete(id) // taken over while we were away: the next append asks again
        }
      }
    }).pipe(Effect.catchAll((e) => Effect.logWarning(`cannot renew the leases of ${where}: ${e.message}`)))

    yield* Effect.forkScoped(Effect.repeat(renew, Schedule.spaced(Duration.millis(renewEvery))))
    yield* Effect.addFinalizer(() =>
      sql`DELETE FROM converge_leases WHERE owner = ${owner}`.pipe(
        Effect.catchAll((e) => Effect.logWarning(`cannot give back the leases of ${where}: ${e.message}`))
      )
    )

    // ---- appending ----------------------------------------------------------------------

    /** How many times an append builds again on a head another writer moved, before it gives up. */
    const ATTEMPTS = 5

    /**
     * Appends what `plan` builds on the transcript as this process knows it: one statement
     * (`converge_append`) takes or renews the lease and inserts the entries if the head is
     * still where `plan` saw it; when it moved, the new rows are read and `plan` builds again.
     * While this process holds the lease its copy is exact, so an append is one round trip.
     */
    const appendPlanned = <A>(
      sessionId: string,
      sessionKey: string | undefined,
      plan: (
        c: Cached,
        now: number
      ) => Effect.Effect<
        { readonly result: A; readonly entries: ReadonlyArray<TranscriptEntry> },
        StorageError
      >
    ): Effect.Effect<A, SessionLeased | StorageError> =>
      Effect.gen(function* () {
        yield* checkId(sessionId)
        for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
          const now = yield* Clock.currentTimeMillis
          const c = (yield* current(sessionId)) ?? emptyCached(sessionId)
          const planned = yield* plan(c, now)
          // Nothing to write (the compaction is there already).
          if (planned.entries.length === 0) return planned.result
          const header = sessionHeader(sessionId, new Date(now).toISOString(), cwd, sessionKey)
          const expected = c.fold.nextSeq
          const last = planned.entries[planned.entries.length - 1] as { id?: unknown }
          const rows = yield* sql.unsafe<{ status: string }>(
            "SELECT status FROM converge_append($1, $2, $3, $4::json, $5, $6::text[], $7::text[], $8)",
            [
              sessionId,
              owner,
              leaseMs,
              JSON.stringify(header),
              expected,
              planned.entries.map((e) => JSON.stringify(e)),
              planned.entries.map(compactionIdOf),
              typeof last.id === "string" ? last.id : null
            ]
          )
          const status = rows[0]?.status
          if (status === "leased") {
            held.delete(sessionId)
            return yield* Effect.fail(leased(sessionId))
          }
          if (status === "ok") {
            setHeader(c, header)
            absorb(
              c,
              planned.entries.map((entry, i) => ({ seq: expected + i, entry }))
            )
            cache.set(sessionId, c)
            noteHeld(sessionId, now)
            return planned.result
          }
          // 'stale': someone appended since this copy was read (it was not ours to trust).
          const lease = held.get(sessionId)
          if (lease !== undefined) lease.sureUntil = 0
        }
        return yield* Effect.fail(
          new StorageError({
            path: where,
            message: `cannot append to session ${sessionId}: its transcript moved under ${ATTEMPTS} attempts in a row`
          })
        )
      }).pipe(
        lockOf(sessionId).withPermits(1),
        Effect.catchTag("SqlError", (e) => Effect.fail(fail("cannot append")(e)))
      )

    const append = (
      sessionId: string,
      entries: ReadonlyArray<NewEntry>,
      appendOptions?: AppendOptions
    ): Effect.Effect<ReadonlyArray<Appended>, SessionLeased | StorageError> =>
      entries.length === 0
        ? Effect.as(checkId(sessionId), [])
        : appendPlanned(sessionId, appendOptions?.sessionKey, (c, now) =>
            // An entry that is not one is the caller's bug: a defect, and nothing is written.
            Effect.sync(() => {
              const iso = new Date(now).toISOString()
              let parentId = c.fold.lastId ?? null
              const complete = entries.map((input) => {
                const entry = completeEntry(input, parentId, iso)
                parentId = (entry as { id: string }).id
                return entry
              })
              return {
                result: complete.map((entry, i) => ({
                  seq: c.fold.nextSeq + i,
                  id: (entry as { id: string }).id
                })),
                entries: complete
              }
            })
          )

    const appendCompaction = (
      sessionId: string,
      request: CompactionRequest
    ): Effect.Effect<CompactionAppended, SessionLeased | StorageError> =>
      appendPlanned<CompactionAppended>(sessionId, undefined, (c, now) =>
        Effect.gen(function* () {
          let index = 0
          for (const { seq, entry } of c.entries) {
            if (entry.type !== "compaction") continue
            index++
            const e = entry as CompactionEntry
            if ((e.compactionId ?? e.id) === request.compactionId)
              return { result: { seq, index, created: false, entry: e }, entries: [] }
          }
          const kept = entriesSinceCut(contextOf(c.entries), request.firstKeptEntryId)
          if (kept === undefined) {
            return yield* Effect.fail(
              new StorageError({
                path: where,
                message: `cannot compact session ${sessionId}: firstKeptEntryId ${JSON.stringify(request.firstKeptEntryId)} is not in the context`
              })
            )
          }
          const entry = compactionEntry(request, request.build(kept), c.fold.lastId ?? null, now)
          return {
            result: { seq: c.fold.nextSeq, index: c.fold.compactionIndex + 1, created: true, entry },
            entries: [entry]
          }
        })
      )

    // ---- reading ------------------------------------------------------------------------

    const missing = (sessionId: string) => ({
      kind: "missing" as const,
      message: `transcript of session ${sessionId} does not exist in ${where}`
    })

    const readCurrent = (sessionId: string) =>
      checkId(sessionId).pipe(
        Effect.zipRight(current(sessionId)),
        Effect.catchTag("SqlError", (e) => Effect.fail(fail("cannot read")(e)))
      )

    const read = (sessionId: string): Effect.Effect<TranscriptRead, StorageError> =>
      Effect.map(readCurrent(sessionId), (c) =>
        c === undefined
          ? { entries: [], problems: [missing(sessionId)] }
          : { ...(c.header !== undefined ? { header: c.header } : {}), entries: [...c.entries], problems: [] }
      )

    const fold = (sessionId: string): Effect.Effect<Fold, StorageError> =>
      Effect.map(readCurrent(sessionId), (c) =>
        c === undefined ? finishFold(initialFoldState(sessionId), [missing(sessionId)]) : finishFold(c.fold)
      )

    const exists = (sessionId: string): Effect.Effect<boolean, StorageError> =>
      checkId(sessionId).pipe(
        Effect.zipRight(sql`SELECT 1 FROM converge_transcripts WHERE session_id = ${sessionId}`),
        Effect.map((rows) => rows.length > 0),
        Effect.catchTag("SqlError", (e) => Effect.fail(fail("cannot read")(e)))
      )

    const list: Effect.Effect<ReadonlyArray<string>, StorageError> = sql<{ session_id: string }>`
      SELECT session_id FROM converge_transcripts ORDER BY session_id`.pipe(
      Effect.map((rows) => rows.map((r) => r.session_id)),
      Effect.mapError(fail("cannot list"))
    )

    const hold = (sessionId: string): Effect.Effect<void, SessionLeased | StorageError, Scope.Scope> =>
      Effect.acquireRelease(
        Effect.gen(function* () {
          yield* checkId(sessionId)
          const now = yield* Clock.currentTimeMillis
          yield* takeLease(sessionId).pipe(
            Effect.catchTag("SqlError", (e) => Effect.fail(fail("cannot lease")(e)))
          )
          noteHeld(sessionId, now)
          const lease = held.get(sessionId)
          if (lease !== undefined) lease.holders++
        }),
        () =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.sync(() => {
              const lease = held.get(sessionId)
              if (lease === undefined) return
              lease.holders = Math.max(0, lease.holders - 1)
              lease.lastUsedAt = now
            })
          )
      )

    /** Gives back the lease of `sessionId` now, unless a turn or a compaction holds it (the session moved). */
    const letGo = (sessionId: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        const lease = held.get(sessionId)
        if (lease === undefined || lease.holders > 0) return Effect.void
        held.delete(sessionId)
        return sql`DELETE FROM converge_leases WHERE owner = ${owner} AND session_id = ${sessionId}`.pipe(
          Effect.asVoid,
          Effect.catchAll((e) =>
            Effect.logWarning(`cannot give back the lease of ${sessionId}: ${e.message}`)
          )
        )
      })

    const cacheStats: Effect.Effect<CacheStats> = Effect.sync(() => ({
      sessions: cache.size,
      bytes: cache.weight,
      evictions,
      leases: held.size
    }))

    return Transcript.make({
      cacheStats,
      append: (sessionId: string, entries: ReadonlyArray<NewEntry>, appendOptions?: AppendOptions) =>
        timedAppend("converge.transcript.append", sessionId, append(sessionId, entries, appendOptions)),
      appendCompaction: (sessionId: string, request: CompactionRequest) =>
        timedAppend("converge.transcript.append_compaction", sessionId, appendCompaction(sessionId, request)),
      read,
      buildContext: (sessionId: string) =>
        Effect.map(readCurrent(sessionId), (c) => contextOf(c === undefined ? [] : c.entries)),
      fold,
      exists,
      list,
      hold,
      letGo
    })
  })

/** `Transcript` on the database of `SqlClient` (migrated: see `Database.layer`). */
export const layerPgTranscript = (
  options: PgTranscriptOptions
): Layer.Layer<Transcript, never, SqlClient.SqlClient> => Layer.scoped(Transcript, makePgTranscript(options))

/** What importing one transcript did. */
export interface TranscriptImported {
  readonly sessionId: string
  /** Entries written (0 on a second import of the same file). */
  readonly inserted: number
  /** Lines that are not entries (malformed, torn): not imported; their seqs stay free. */
  readonly skipped: number
}

/**
 * Loads a pi v3 transcript text (`<sessionId>.jsonl`) into the tables, each entry at the seq
 * its line has in the file. Idempotent: rows already there are kept, so a second import
 * changes nothing. A file whose first line is not a header gets a header naming its session.
 */
export const importTranscriptText = (
  url: string,
  sessionId: string,
  text: string
): Effect.Effect<TranscriptImported, StorageError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    if (Either.isLeft(decodeSessionId(sessionId)))
      return yield* new StorageError({
        path: maskUrl(url),
        message: `cannot import transcript: not a usable session id ${JSON.stringify(sessionId)}`
      })
    const sql = yield* SqlClient.SqlClient
    const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
    const parsed = parseTranscript(body)
    // Each line as written (the line of seq n is physical line n + 1): an export gives it back.
    const raw = body.split("\n").map((line) => (line.endsWith("\r") ? line.slice(0, -1) : line))
    const entries = parsed.lines.flatMap((line) =>
      line.entry === undefined
        ? []
        : [{ seq: line.seq, entry: line.entry, text: raw[line.seq + 1] ?? JSON.stringify(line.entry) }]
    )
    const first = entries[0]?.entry as { timestamp?: unknown } | undefined
    const headerText =
      parsed.header !== undefined
        ? (raw[0] ?? JSON.stringify(parsed.header))
        : JSON.stringify(
            sessionHeader(
              sessionId,
              typeof first?.timestamp === "string" ? first.timestamp : new Date(0).toISOString(),
              "",
              undefined
            )
          )
    const last = entries[entries.length - 1]?.entry as { id?: unknown } | undefined
    let inserted = 0
    yield* sql
      .withTransaction(
        Effect.gen(function* () {
          yield* sql.unsafe(
            `INSERT INTO converge_transcripts (session_id, header, next_seq, last_id) VALUES ($1, $2::json, 0, NULL)
           ON CONFLICT (session_id) DO NOTHING`,
            [sessionId, headerText]
          )
          for (let i = 0; i < entries.length; i += 500) {
            const batch = entries.slice(i, i + 500)
            const params: Array<unknown> = []
            const values = batch.map(({ seq, entry, text }) => {
              const n = params.length
              params.push(sessionId, seq, text, compactionIdOf(entry))
              return `($${n + 1}, $${n + 2}, $${n + 3}::json, $${n + 4})`
            })
            const rows = yield* sql.unsafe(
              `INSERT INTO converge_entries (session_id, seq, entry, compaction_id) VALUES ${values.join(", ")}
             ON CONFLICT DO NOTHING RETURNING seq`,
              params
            )
            inserted += rows.length
          }
          yield* sql`
          UPDATE converge_transcripts SET
            next_seq = GREATEST(next_seq, ${parsed.lines.length}),
            last_id = CASE WHEN next_seq <= ${parsed.lines.length} THEN ${typeof last?.id === "string" ? last.id : null} ELSE last_id END
          WHERE session_id = ${sessionId}`
        })
      )
      .pipe(
        transactionErrors,
        Effect.mapError(storageError(url, `cannot import transcript ${sessionId} into`))
      )
    return { sessionId, inserted, skipped: parsed.lines.length - entries.length }
  })

/** The session ids with a transcript in the database, in order. */
export const listTranscripts = (
  url: string
): Effect.Effect<ReadonlyArray<string>, StorageError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ session_id: string }>`SELECT session_id FROM converge_transcripts ORDER BY session_id`.pipe(
      Effect.map((rows) => rows.map((r) => r.session_id)),
      Effect.mapError(storageError(url, "cannot list transcripts in"))
    )
  )

/**
 * The transcript of `sessionId` as pi v3 JSONL — the header line, then each entry's line as it
 * was written — or `undefined` when the database has none.
 */
export const exportTranscriptText = (
  url: string,
  sessionId: string
): Effect.Effect<string | undefined, StorageError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const heads = yield* sql<{ header: string }>`
      SELECT header::text AS header FROM converge_transcripts WHERE session_id = ${sessionId}`
    if (heads[0] === undefined) return undefined
    const rows = yield* sql<{ line: string }>`
      SELECT entry::text AS line FROM converge_entries WHERE session_id = ${sessionId} ORDER BY seq`
    return [heads[0].header, ...rows.map((r) => r.line)].map((line) => `${line}\n`).join("")
  }).pipe(Effect.mapError(storageError(url, `cannot export transcript ${sessionId} from`)))
