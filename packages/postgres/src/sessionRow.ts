/**
 * A session entry as a row of `converge_sessions`, and back. Owned fields are columns; the
 * fields Converge does not own ride whole in `unowned` (jsonb) and the entry's key order in
 * `field_order`. The tie-breaks of the lattice compare canonical JSON as JavaScript does
 * (UTF-16 code units), so each tie-break key is stored beside its value as UTF-16BE bytes:
 * PostgreSQL compares `bytea` byte by byte, which is the same order.
 */
import type { SessionEntry } from "@converge/domain"
import { canonicalJson, isMeasured, isOwnedField, mergeEntries, snapshotPayload } from "@converge/store"

/** The columns of one row, in statement order. */
export const SESSION_COLUMNS = [
  "session_key",
  "session_id",
  "session_id_key",
  "generation",
  "session_started_at",
  "owned_for",
  "owned_for_key",
  "compaction_count",
  "compaction_base",
  "snap",
  "snap_seq",
  "snap_key",
  "fresh",
  "last_compaction",
  "lc_ordinal",
  "lc_key",
  "last_run",
  "run_seq",
  "run_key",
  "updated_at",
  "unowned",
  "field_order"
] as const

type Column = (typeof SESSION_COLUMNS)[number]

/** The SQL type of each column (the statement casts its parameters to them). */
const COLUMN_TYPES: Record<Column, string> = {
  session_key: "text",
  session_id: "text",
  session_id_key: "bytea",
  generation: "float8",
  session_started_at: "float8",
  owned_for: "text",
  owned_for_key: "bytea",
  compaction_count: "float8",
  compaction_base: "float8",
  snap: "jsonb",
  snap_seq: "float8",
  snap_key: "bytea",
  fresh: "boolean",
  last_compaction: "jsonb",
  lc_ordinal: "float8",
  lc_key: "bytea",
  last_run: "jsonb",
  run_seq: "float8",
  run_key: "bytea",
  updated_at: "float8",
  unowned: "jsonb",
  field_order: "text[]"
}

/** A row as the driver returns it (bytea as `Buffer`, jsonb parsed, float8 as number). */
export type SessionRow = { readonly [K in Column]: unknown }

/** JavaScript's string order as bytes: each UTF-16 code unit, big-endian. */
export const utf16Key = (s: string): Buffer => {
  const b = Buffer.from(s, "utf16le")
  b.swap16()
  return b
}

const num = (v: unknown): number | null => (typeof v === "number" ? v : null)

/** The parameters of one row for `entry` (normalized by the pure merge, as the store does). */
export const toRow = (key: string, raw: SessionEntry): ReadonlyArray<unknown> => {
  const e = mergeEntries(raw, raw)
  const measured = isMeasured(e)
  const snap: Record<string, unknown> = {}
  if (e.totalTokens !== undefined) snap.totalTokens = e.totalTokens
  if (e.inputTokens !== undefined) snap.inputTokens = e.inputTokens
  if (e.outputTokens !== undefined) snap.outputTokens = e.outputTokens
  const unowned: Record<string, unknown> = {}
  for (const k of Object.keys(e)) if (!isOwnedField(k) && e[k] !== undefined) unowned[k] = e[k]
  return [
    key,
    e.sessionId,
    utf16Key(e.sessionId),
    e.generation ?? null,
    e.sessionStartedAt ?? null,
    e.ownedFor ?? null,
    e.ownedFor === undefined ? null : utf16Key(e.ownedFor),
    e.compactionCount ?? null,
    e.compactionBase ?? null,
    measured ? JSON.stringify(snap) : null,
    e.tokensAsOfSeq ?? null,
    measured ? utf16Key(snapshotPayload(e)) : null,
    e.totalTokensFresh ?? null,
    e.lastCompaction === undefined ? null : JSON.stringify(e.lastCompaction),
    e.lastCompaction?.ordinal ?? null,
    e.lastCompaction === undefined ? null : utf16Key(canonicalJson(e.lastCompaction)),
    e.lastRun === undefined ? null : JSON.stringify(e.lastRun),
    e.lastRun?.seq ?? null,
    e.lastRun === undefined ? null : utf16Key(canonicalJson(e.lastRun)),
    e.updatedAt ?? null,
    JSON.stringify(unowned),
    Object.keys(e).filter((k) => e[k] !== undefined)
  ]
}

/** The entry a row holds, its fields in the order it keeps. */
export const fromRow = (row: SessionRow): SessionEntry => {
  const owned: Record<string, unknown> = { sessionId: row.session_id }
  const snap = (row.snap ?? {}) as Record<string, unknown>
  for (const k of ["totalTokens", "inputTokens", "outputTokens"])
    if (Object.hasOwn(snap, k)) owned[k] = snap[k]
  const set = (k: string, v: unknown) => {
    if (v !== null && v !== undefined) owned[k] = v
  }
  set("tokensAsOfSeq", num(row.snap_seq))
  set("generation", num(row.generation))
  set("sessionStartedAt", num(row.session_started_at))
  set("ownedFor", row.owned_for)
  set("compactionCount", num(row.compaction_count))
  set("compactionBase", num(row.compaction_base))
  set("lastCompaction", row.last_compaction)
  set("lastRun", row.last_run)
  set("updatedAt", num(row.updated_at))
  // Derived on every merge: where no key order has it, the pure merge adds it last.
  set("totalTokensFresh", row.fresh)
  const unowned = (row.unowned ?? {}) as Record<string, unknown>
  const out: Record<string, unknown> = {}
  for (const k of (row.field_order ?? []) as ReadonlyArray<string>) {
    if (Object.hasOwn(out, k)) continue
    if (Object.hasOwn(owned, k)) out[k] = owned[k]
    else if (Object.hasOwn(unowned, k)) out[k] = unowned[k]
  }
  for (const k of Object.keys(unowned)) if (!Object.hasOwn(out, k)) out[k] = unowned[k]
  return Object.assign(out, owned) as SessionEntry
}

// The merge statement. `s` is the stored row, `e` the patch (`excluded`); `v.c` compares
// their versions (1: the patch is newer, -1: older, 0: the same version).
const pick = (col: string, same: string) =>
  `CASE WHEN v.c > 0 THEN e.${col} WHEN v.c < 0 THEN s.${col} ELSE ${same} END`
/** The greater of two optional values by a condition on `e` over `s`, several columns at once. */
const pickBy = (col: string, nullCol: string, eWins: string) =>
  pick(
    col,
    `CASE WHEN s.${nullCol} IS NULL THEN e.${col} WHEN e.${nullCol} IS NULL THEN s.${col} WHEN ${eWins} THEN e.${col} ELSE s.${col} END`
  )

const lcWins = "(e.lc_ordinal, e.lc_key) > (s.lc_ordinal, s.lc_key)"
const runWins = "(e.run_seq, e.run_key) > (s.run_seq, s.run_key)"
const ownedForWins = "e.owned_for_key > s.owned_for_key"
// Snapshots: measured at all, then asOfSeq (absent −1), then the payload; on a tie the raw
// freshness flag is joined (absent < false < true, which is what GREATEST does with NULL).
const snapOrder = (t: string) =>
  `(${t}.snap_key IS NOT NULL, COALESCE(${t}.snap_seq, -1), COALESCE(${t}.snap_key, '\\x'::bytea))`
const snapCase = (col: string) =>
  pick(
    col,
    `CASE WHEN ${snapOrder("e")} > ${snapOrder("s")} THEN e.${col} WHEN ${snapOrder("e")} < ${snapOrder("s")} THEN s.${col} ELSE ${
      col === "fresh" ? "GREATEST(s.fresh, e.fresh)" : `s.${col}`
    } END`
  )

const joined = [
  ["session_id", pick("session_id", "s.session_id")],
  ["session_id_key", pick("session_id_key", "s.session_id_key")],
  ["generation", pick("generation", "GREATEST(s.generation, e.generation)")],
  ["session_started_at", pick("session_started_at", "GREATEST(s.session_started_at, e.session_started_at)")],
  ["owned_for", pickBy("owned_for", "owned_for", ownedForWins)],
  ["owned_for_key", pickBy("owned_for_key", "owned_for", ownedForWins)],
  ["compaction_count", pick("compaction_count", "GREATEST(s.compaction_count, e.compaction_count)")],
  ["compaction_base", pick("compaction_base", "GREATEST(s.compaction_base, e.compaction_base)")],
  ["snap", snapCase("snap")],
  ["snap_seq", snapCase("snap_seq")],
  ["snap_key", snapCase("snap_key")],
  ["fresh", snapCase("fresh")],
  ["last_compaction", pickBy("last_compaction", "last_compaction", lcWins)],
  ["lc_ordinal", pickBy("lc_ordinal", "last_compaction", lcWins)],
  ["lc_key", pickBy("lc_key", "last_compaction", lcWins)],
  ["last_run", pickBy("last_run", "last_run", runWins)],
  ["run_seq", pickBy("run_seq", "last_run", runWins)],
  ["run_key", pickBy("run_key", "last_run", runWins)]
] as const

/**
 * `INSERT … ON CONFLICT DO UPDATE`: the join of DESIGN §2.4 of the stored row and the patch,
 * in one statement. The patch row is normalized (`toRow`), so an insert needs no join. The
 * version triple decides with a row comparison; equal versions take maxima (`GREATEST`), the
 * greater `(ordinal|seq, canonical JSON)` for `lastCompaction`/`lastRun`, the greater
 * snapshot; `updatedAt` is a max over every version; `totalTokensFresh` is derived from the
 * joined snapshot and compaction; fields Converge does not own: the patch's over the row's.
 */
export const mergeSql = (table: string): string => {
  const columns = SESSION_COLUMNS.join(", ")
  const params = SESSION_COLUMNS.map((c, i) => {
    return `$${i + 1}::${COLUMN_TYPES[c]}`
  }).join(", ")
  const version = (t: string) =>
    `(COALESCE(${t}.generation, 0), COALESCE(${t}.session_started_at, 0), ${t}.session_id_key)`
  const inner = joined.map(([c, expr]) => `${expr} AS ${c}`).join(",\n        ")
  const fresh = `CASE WHEN m.snap_seq IS NULL THEN (CASE WHEN m.last_compaction IS NULL THEN m.fresh ELSE false END)
         WHEN m.last_compaction IS NULL THEN true
         ELSE m.snap_seq >= COALESCE((m.last_compaction->>'seq')::float8, -1) END`
  // The entry's key order, as the pure merge keeps it: the row's keys, then the patch's new
  // ones, each only while the merged entry has it (a key that went away and comes back is
  // placed where the patch that brings it has it).
  const present = `CASE k
           WHEN 'sessionId' THEN true
           WHEN 'totalTokens' THEN m.snap ? 'totalTokens'
           WHEN 'inputTokens' THEN m.snap ? 'inputTokens'
           WHEN 'outputTokens' THEN m.snap ? 'outputTokens'
           WHEN 'tokensAsOfSeq' THEN m.snap_seq IS NOT NULL
           WHEN 'totalTokensFresh' THEN (${fresh}) IS NOT NULL
           WHEN 'generation' THEN m.generation IS NOT NULL
           WHEN 'sessionStartedAt' THEN m.session_started_at IS NOT NULL
           WHEN 'ownedFor' THEN m.owned_for IS NOT NULL
           WHEN 'compactionCount' THEN m.compaction_count IS NOT NULL
           WHEN 'compactionBase' THEN m.compaction_base IS NOT NULL
           WHEN 'lastCompaction' THEN m.last_compaction IS NOT NULL
           WHEN 'lastRun' THEN m.last_run IS NOT NULL
           WHEN 'updatedAt' THEN COALESCE(s.updated_at, e.updated_at) IS NOT NULL
           ELSE (s.unowned || e.unowned) ? k END`
  const order = `ARRAY(SELECT k FROM (SELECT k, min(i) AS i
             FROM unnest(s.field_order || e.field_order) WITH ORDINALITY AS t(k, i) GROUP BY k) u
           WHERE ${present} ORDER BY i)`
  const outer = SESSION_COLUMNS.filter((c) => c !== "session_key")
  const select = outer
    .map((c) =>
      c === "fresh"
        ? `${fresh}`
        : c === "updated_at"
          ? "GREATEST(s.updated_at, e.updated_at)"
          : c === "unowned"
            ? "s.unowned || e.unowned"
            : c === "field_order"
              ? order
              : `m.${c}`
    )
    .join(",\n      ")
  return `INSERT INTO ${table} AS s (${columns}) VALUES (${params})
ON CONFLICT (session_key) DO UPDATE SET (${outer.join(", ")}) = (
  SELECT ${select}
  FROM (SELECT ${inner}
        FROM (SELECT excluded.*) e,
             (SELECT CASE WHEN ${version("excluded")} > ${version("s")} THEN 1
                          WHEN ${version("excluded")} < ${version("s")} THEN -1 ELSE 0 END AS c OFFSET 0) v
        OFFSET 0) m,
       (SELECT excluded.*) e
)
RETURNING *`
}
/** The name of the function that runs `mergeSql` (created by the migrations). */
export const MERGE_FUNCTION = "converge_merge_session"

/**
 * The merge statement wrapped in a PL/pgSQL function, so each connection plans it once:
 * sent as text, the statement cost ~5 ms to parse and plan for ~0.3 ms of execution.
 * It is still one `INSERT … ON CONFLICT DO UPDATE`, atomic on its row.
 */
export const mergeFunctionSql = (table: string): string =>
  `CREATE OR REPLACE FUNCTION ${MERGE_FUNCTION}(${SESSION_COLUMNS.map((c) => COLUMN_TYPES[c]).join(", ")})
RETURNS SETOF ${table} LANGUAGE plpgsql AS $merge$
BEGIN
  RETURN QUERY WITH merged AS (
${mergeSql(table)}
  ) SELECT * FROM merged;
END
$merge$`

/** The call of the merge function with one row's parameters (`toRow`). */
export const mergeCallSql = `SELECT * FROM ${MERGE_FUNCTION}(${SESSION_COLUMNS.map((c, i) => `$${i + 1}::${COLUMN_TYPES[c]}`).join(", ")})`

// (`OFFSET 0` keeps the planner from inlining `v` and `m` into every expression that reads
// them: inlined, the statement took ~8 ms to plan for ~1 ms of execution.)
