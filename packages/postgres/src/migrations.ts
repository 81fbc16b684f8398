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

// One append as one statement (PgTranscript.ts): take or renew the lease, lock the head row,
// check that the caller built its entries on the head it saw (`expected_seq`), insert them and
// move the head. 'leased': another live owner holds the session; 'stale': the head moved, read
// again and rebuild. Leases are compared on the database's clock.
const appendFunction = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.unsafe(`
    CREATE OR REPLACE FUNCTION converge_append(
      p_session text, p_owner text, p_lease_ms float8, p_header json,
      p_expected_seq integer, p_entries text[], p_compaction_ids text[], p_last_id text
    ) RETURNS TABLE (status text, next_seq integer, last_id text) LANGUAGE plpgsql AS $$
    DECLARE
      now_ms float8 := extract(epoch from clock_timestamp()) * 1000;
      got text;
      head_seq integer;
      head_last text;
    BEGIN
      INSERT INTO converge_leases AS l (session_id, owner, expires_at)
      VALUES (p_session, p_owner, now_ms + p_lease_ms)
      ON CONFLICT (session_id) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
      WHERE l.owner = EXCLUDED.owner OR l.expires_at < now_ms
      RETURNING l.owner INTO got;
      IF got IS NULL THEN
        RETURN QUERY SELECT 'leased'::text, NULL::integer, NULL::text;
        RETURN;
      END IF;
      INSERT INTO converge_transcripts AS t (session_id, header, next_seq) VALUES (p_session, p_header, 0)
      ON CONFLICT (session_id) DO NOTHING;
      SELECT t.next_seq, t.last_id INTO head_seq, head_last
      FROM converge_transcripts t WHERE t.session_id = p_session FOR UPDATE;
      IF head_seq <> p_expected_seq THEN
        RETURN QUERY SELECT 'stale'::text, head_seq, head_last;
        RETURN;
      END IF;
      INSERT INTO converge_entries (session_id, seq, entry, compaction_id)
      SELECT p_session, p_expected_seq + i - 1, p_entries[i]::json, p_compaction_ids[i]
      FROM generate_subscripts(p_entries, 1) AS i;
      UPDATE converge_transcripts t SET next_seq = p_expected_seq + cardinality(p_entries), last_id = p_last_id
      WHERE t.session_id = p_session;
      RETURN QUERY SELECT 'ok'::text, p_expected_seq + cardinality(p_entries), p_last_id;
    END
    $$`)
)

// The compactions running now, one row each, owned by the process running it and renewed by
// it: a row no one renews belongs to a process that died before the commit (its failure is
// published by whichever gateway deletes the row).
const runningCompactions = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql`
    CREATE TABLE IF NOT EXISTS converge_running_compactions (
      compaction_id text PRIMARY KEY,
      session_key text NOT NULL,
      session_id text NOT NULL,
      generation float8 NOT NULL,
      owner text NOT NULL,
      renewed_at bigint NOT NULL
    )`
)

export const migrations = {
  "1_sessions": sessions,
  "2_merge_function": mergeFunction,
  "3_idempotency": idempotency,
  "4_transcripts": transcripts,
  "5_append_function": appendFunction,
  "6_running_compactions": runningCompactions
}
