/**
 * The schema, as `@effect/sql` migrations (`<id>_<name>`): run in order at start-up, each
 * once per database (recorded in `converge_migrations`).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"
import { mergeFunctionSql } from "./sessionRow.js"

const sessions = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql`
    CREATE TABLE IF NOT EXISTS converge_sessions (
      session_key text PRIMARY KEY,
      session_id text NOT NULL,
      session_id_key bytea NOT NULL,
      generation float8,
      session_started_at float8,
      owned_for text,
      owned_for_key bytea,
      compaction_count float8,
      compaction_base float8,
      snap jsonb,
      snap_seq float8,
      snap_key bytea,
      fresh boolean,
      last_compaction jsonb,
      lc_ordinal float8,
      lc_key bytea,
      last_run jsonb,
      run_seq float8,
      run_key bytea,
      updated_at float8,
      unowned jsonb NOT NULL DEFAULT '{}'::jsonb,
      field_order text[] NOT NULL DEFAULT '{}'
    )`
)

const mergeFunction = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.unsafe(mergeFunctionSql("converge_sessions"))
)

// One row per (session key, Idempotency-Key): who holds it (`token`) until when, and the
// first turn's result once it is answered (DESIGN §7's 24 h from the claim).
const idempotency = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql`
    CREATE TABLE IF NOT EXISTS converge_idempotency (
      session_key text NOT NULL,
      key text NOT NULL,
      token text NOT NULL,
      claimed_at float8 NOT NULL,
      held_until float8 NOT NULL,
      result jsonb,
      PRIMARY KEY (session_key, key)
    )`.pipe(
    Effect.zipRight(
      sql`CREATE INDEX IF NOT EXISTS converge_idempotency_claimed_at ON converge_idempotency (claimed_at)`
    )
  )
)

// Transcripts (PgTranscript.ts): a head row per session, the entries by (session_id, seq) as
// `json` (the line as written: an export gives the same bytes), compactions unique per session;
// and the leases that say which gateway may append to a session.
const transcripts = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.all(
    [
      sql`
      CREATE TABLE IF NOT EXISTS converge_transcripts (
        session_id text PRIMARY KEY,
        header json NOT NULL,
        next_seq integer NOT NULL DEFAULT 0,
        last_id text
      )`,
      sql`
      CREATE TABLE IF NOT EXISTS converge_entries (
        session_id text NOT NULL,
        seq integer NOT NULL,
        entry json NOT NULL,
        compaction_id text,
        PRIMARY KEY (session_id, seq)
      )`,
      sql`
      CREATE UNIQUE INDEX IF NOT EXISTS converge_entries_compaction
      ON converge_entries (session_id, compaction_id) WHERE compaction_id IS NOT NULL`,
      sql`
      CREATE TABLE IF NOT EXISTS converge_leases (
        session_id text PRIMARY KEY,
        owner text NOT NULL,
        expires_at float8 NOT NULL
      )`
    ],
    { discard: true }
  )
)

export const migrations = {
  "1_sessions": sessions,
  "2_merge_function": mergeFunction,
  "3_idempotency": idempotency,
  "4_transcripts": transcripts
}
