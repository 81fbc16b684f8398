/**
 * The merge functions of DESIGN §2.4: a join-semilattice on the fields Converge owns, and
 * the three-way rule for the fields it does not. Pure: no Effect runtime, no I/O.
 *
 * An entry's owned fields form a lexicographic lattice: the version
 * (`generation`, `sessionStartedAt`, `sessionId`; absent numbers count as 0) is totally
 * ordered, the greater version replaces the owned fields whole, and equal versions merge
 * field by field (maxima, "greater `asOfSeq` wins", ties broken by canonical JSON).
 * `updatedAt` is a max over every version. So `mergeEntries` is commutative, associative
 * and idempotent on the owned fields, whatever order updates arrive in.
 */
import {
  type LastCompaction,
  type LastRun,
  OWNED_FIELDS,
  type OwnedField,
  type SessionEntry
} from "@converge/domain"

/** A partial entry merged into the store: the version, the owned fields it raises, unowned fields it sets. */
export type SessionPatch = SessionEntry

type Mutable<T> = { -readonly [K in keyof T]: T[K] }
type Owned = Mutable<Pick<SessionEntry, OwnedField>>

const OWNED: ReadonlySet<string> = new Set<string>(OWNED_FIELDS)

/** True for the fields of the lattice (DESIGN §2.4); every other field follows the three-way rule. */
export const isOwnedField = (field: string): boolean => OWNED.has(field)

const cmp = <A extends number | string>(a: A, b: A): number => (a < b ? -1 : a > b ? 1 : 0)

/** JSON with object keys sorted at every depth: the total order used to break ties. */
export const canonicalJson = (value: unknown): string => {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null"
  if (Array.isArray(value))
    return `[${value.map((v) => (v === undefined ? "null" : canonicalJson(v))).join(",")}]`
  const record: Record<string, unknown> = { ...value }
  const parts: Array<string> = []
  for (const key of Object.keys(record).sort()) {
    const v = record[key]
    if (v === undefined) continue
    parts.push(`${JSON.stringify(key)}:${canonicalJson(v)}`)
  }
  return `{${parts.join(",")}}`
}

const definedKeys = (o: object): number => {
  let n = 0
  for (const k in o) if (Object.hasOwn(o, k) && Reflect.get(o, k) !== undefined) n++
  return n
}

/** Structural equality of JSON values (key order ignored); `undefined` equals only itself. */
export const jsonEqual = (a: unknown, b: unknown): boolean => {
  if (a === b) return true
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false
    return true
  }
  let n = 0
  for (const k in a) {
    if (!Object.hasOwn(a, k)) continue
    const va: unknown = Reflect.get(a, k)
    if (va === undefined) continue
    n++
    if (!Object.hasOwn(b, k) || !jsonEqual(va, Reflect.get(b, k))) return false
  }
  return n === definedKeys(b)
}

/**
 * Compares the versions of two entries: `generation`, then `sessionStartedAt` (both
 * absent = 0), then `sessionId`. Negative when `a` is older, 0 when equal, positive when newer.
 */
export const compareVersion = (a: SessionEntry, b: SessionEntry): number =>
  cmp(a.generation ?? 0, b.generation ?? 0) ||
  cmp(a.sessionStartedAt ?? 0, b.sessionStartedAt ?? 0) ||
  cmp(a.sessionId, b.sessionId)

const maxOpt = <A extends number | string>(a: A | undefined, b: A | undefined): A | undefined =>
  a === undefined ? b : b === undefined ? a : a >= b ? a : b

/** Picks the greater of two optional payloads by `rank`, ties broken by canonical JSON. */
const maxBy = <A>(a: A | undefined, b: A | undefined, rank: (x: A) => number): A | undefined => {
  if (a === undefined) return b
  if (b === undefined) return a
  const c = cmp(rank(a), rank(b)) || cmp(canonicalJson(a), canonicalJson(b))
  return c >= 0 ? a : b
}

/** The token snapshot: replaced as one unit by a greater `tokensAsOfSeq` (absent = −1). */
export type Snapshot = Pick<
  Owned,
  "totalTokens" | "inputTokens" | "outputTokens" | "tokensAsOfSeq" | "totalTokensFresh"
>

/** Copies the snapshot fields of `from` into `to` (plain assignments keep object shapes uniform, and merges fast). */
const copySnapshot = <T extends Snapshot>(to: T, from: Snapshot): T => {
  if (from.totalTokens !== undefined) to.totalTokens = from.totalTokens
  if (from.inputTokens !== undefined) to.inputTokens = from.inputTokens
  if (from.outputTokens !== undefined) to.outputTokens = from.outputTokens
  if (from.tokensAsOfSeq !== undefined) to.tokensAsOfSeq = from.tokensAsOfSeq
  if (from.totalTokensFresh !== undefined) to.totalTokensFresh = from.totalTokensFresh
  return to
}

const snapshotOf = (e: SessionEntry): Snapshot => copySnapshot({}, e)

/** The measurement itself (absent and `null` told apart), without the derived freshness flag. */
export const snapshotPayload = (s: Snapshot): string =>
  canonicalJson({
    totalTokens: s.totalTokens,
    inputTokens: s.inputTokens,
    outputTokens: s.outputTokens,
    tokensAsOfSeq: s.tokensAsOfSeq
  })

/** Whether the snapshot holds a measurement (not only the freshness flag). */
export const isMeasured = (s: Snapshot): boolean =>
  s.totalTokens !== undefined ||
  s.inputTokens !== undefined ||
  s.outputTokens !== undefined ||
  s.tokensAsOfSeq !== undefined

/**
 * Snapshots are ordered by: measured at all, `tokensAsOfSeq`, the payload, then the raw
 * freshness flag; the join is the greater. A snapshot holding only a freshness flag (a
 * normalized entry that never had tokens) is below every measurement, whatever the payload
 * order would say.
 */
const joinSnapshot = (a: Snapshot, b: Snapshot): Snapshot => {
  const c =
    cmp(Number(isMeasured(a)), Number(isMeasured(b))) ||
    cmp(a.tokensAsOfSeq ?? -1, b.tokensAsOfSeq ?? -1) ||
    cmp(snapshotPayload(a), snapshotPayload(b))
  if (c > 0) return a
  if (c < 0) return b
  // Same measurement: only the raw freshness flag can differ; join it (absent < false < true).
  if (a.totalTokensFresh === undefined) return b
  if (b.totalTokensFresh === undefined) return a
  return a.totalTokensFresh || !b.totalTokensFresh ? a : b
}

/**
 * `totalTokensFresh` as the merged fields decide it: `tokensAsOfSeq >= lastCompaction.seq`,
 * true when no compaction is known, false for an unmeasured snapshot once a compaction is
 * known; the stored flag only when neither a measurement nor a compaction is known.
 */
const deriveFresh = (o: Owned): boolean | undefined => {
  const lc = o.lastCompaction
  if (o.tokensAsOfSeq === undefined) return lc === undefined ? o.totalTokensFresh : false
  if (lc === undefined) return true
  return o.tokensAsOfSeq >= (lc.seq ?? -1)
}

const ownedOf = (e: SessionEntry): Owned => {
  const o: Owned = copySnapshot<Owned>({ sessionId: e.sessionId }, e)
  if (e.generation !== undefined) o.generation = e.generation
  if (e.sessionStartedAt !== undefined) o.sessionStartedAt = e.sessionStartedAt
  if (e.ownedFor !== undefined) o.ownedFor = e.ownedFor
  if (e.compactionCount !== undefined) o.compactionCount = e.compactionCount
  if (e.compactionBase !== undefined) o.compactionBase = e.compactionBase
  if (e.lastCompaction !== undefined) o.lastCompaction = e.lastCompaction
  if (e.lastRun !== undefined) o.lastRun = e.lastRun
  return o
}

const lcRank = (c: LastCompaction): number => c.ordinal
const runRank = (r: LastRun): number => r.seq

/** The join of the owned fields of two entries. */
const joinOwned = (a: SessionEntry, b: SessionEntry): Owned => {
  const c = compareVersion(a, b)
  let o: Owned
  if (c > 0) o = ownedOf(a)
  else if (c < 0) o = ownedOf(b)
  else {
    o = copySnapshot<Owned>({ sessionId: a.sessionId }, joinSnapshot(snapshotOf(a), snapshotOf(b)))
    const generation = maxOpt(a.generation, b.generation)
    if (generation !== undefined) o.generation = generation
    const sessionStartedAt = maxOpt(a.sessionStartedAt, b.sessionStartedAt)
    if (sessionStartedAt !== undefined) o.sessionStartedAt = sessionStartedAt
    const ownedFor = maxOpt(a.ownedFor, b.ownedFor)
    if (ownedFor !== undefined) o.ownedFor = ownedFor
    const compactionCount = maxOpt(a.compactionCount, b.compactionCount)
    if (compactionCount !== undefined) o.compactionCount = compactionCount
    const compactionBase = maxOpt(a.compactionBase, b.compactionBase)
    if (compactionBase !== undefined) o.compactionBase = compactionBase
    const lastCompaction = maxBy(a.lastCompaction, b.lastCompaction, lcRank)
    if (lastCompaction !== undefined) o.lastCompaction = lastCompaction
    const lastRun = maxBy(a.lastRun, b.lastRun, runRank)
    if (lastRun !== undefined) o.lastRun = lastRun
  }
  const updatedAt = maxOpt(a.updatedAt, b.updatedAt)
  if (updatedAt !== undefined) o.updatedAt = updatedAt
  const fresh = deriveFresh(o)
  if (fresh === undefined) delete o.totalTokensFresh
  else o.totalTokensFresh = fresh
  return o
}

/**
 * Builds an entry from its owned fields and the values of its other fields, keeping the
 * key order of `order` (then any new owned field at the end).
 */
const assemble = (
  order: ReadonlyArray<ReadonlyArray<string>>,
  owned: Owned,
  unowned: (field: string) => { readonly value: unknown } | undefined
): SessionEntry => {
  const out: Record<string, unknown> = {}
  const ownedRecord: Record<string, unknown> = owned
  for (const keys of order) {
    for (const key of keys) {
      if (Object.hasOwn(out, key)) continue
      if (OWNED.has(key)) {
        const v = ownedRecord[key]
        if (v !== undefined) out[key] = v
      } else {
        const v = unowned(key)
        if (v !== undefined) out[key] = v.value
      }
    }
  }
  return Object.assign(out, owned)
}

const field = (e: SessionEntry | undefined, key: string): { readonly value: unknown } | undefined =>
  e !== undefined && Object.hasOwn(e, key) ? { value: e[key] } : undefined

/**
 * The join of two entries. Owned fields: the lattice of DESIGN §2.4 (commutative,
 * associative, idempotent). Other fields: `b`'s value over `a`'s (a patch sets them);
 * the three-way rule of flushes is `mergeFileWithMemory`.
 */
export const mergeEntries = (a: SessionEntry, b: SessionEntry): SessionEntry => {
  const owned = joinOwned(a, b)
  return assemble([Object.keys(a), Object.keys(b)], owned, (k) => field(b, k) ?? field(a, k))
}

/**
 * True when `entry` was reset by a tool that knows no generations: its `sessionId` differs
 * from its `ownedFor`, or (with no `ownedFor`) from `knownSessionId`, the id known for its key.
 */
export const isForeignReset = (entry: SessionEntry, knownSessionId: string | undefined): boolean =>
  entry.ownedFor !== undefined
    ? entry.ownedFor !== entry.sessionId
    : knownSessionId !== undefined && knownSessionId !== entry.sessionId

/**
 * Normalizes an entry reset by a tool that knows no generations (OpenClaw's `/new` rewrites
 * `sessionId`, keeps the rest): generation = known + 1 (whatever it carries),
 * `sessionStartedAt` = its `updatedAt`, `compactionBase` = `compactionCount` = the count it
 * carries, `ownedFor` = its new `sessionId`; the token snapshot, `lastCompaction` and
 * `lastRun` are dropped; unowned fields kept. Any other entry is returned unchanged.
 */
export const normalizeForeignReset = (
  entry: SessionEntry,
  knownSessionId: string | undefined,
  knownGeneration: number | undefined
): SessionEntry => {
  if (!isForeignReset(entry, knownSessionId)) return entry
  const count = entry.compactionCount ?? 0
  const owned: Owned = {
    sessionId: entry.sessionId,
    generation: Math.max(knownGeneration ?? 0, entry.generation ?? 0) + 1,
    ownedFor: entry.sessionId,
    compactionBase: count,
    compactionCount: count
  }
  if (entry.updatedAt !== undefined) {
    owned.sessionStartedAt = entry.updatedAt
    owned.updatedAt = entry.updatedAt
  }
  return assemble([Object.keys(entry)], owned, (k) => field(entry, k))
}

/**
 * Merge-on-flush for one key. Owned fields: the lattice join of the file's entry (already
 * normalized) and memory's. Other fields, three-way against `base` (the entry as this
 * process last read or wrote it): a field memory did not change since `base` takes the
 * file's value (or its absence); a field memory changed keeps memory's.
 */
export const mergeFileWithMemory = (
  file: SessionEntry,
  memory: SessionEntry,
  base: SessionEntry | undefined
): SessionEntry => {
  const owned = joinOwned(file, memory)
  return assemble([Object.keys(file), Object.keys(memory)], owned, (k) => {
    const mine = field(memory, k)
    return jsonEqual(mine?.value, field(base, k)?.value) ? field(file, k) : mine
  })
}
