/**
 * Generators of session entries over small domains (so versions, ordinals and seqs collide
 * often), and a reference model of the owned fields that knows nothing of the merge code.
 */
import { type LastCompaction, type LastRun, OWNED_FIELDS, type SessionEntry } from "@converge/domain"
import * as fc from "effect/FastCheck"
import { canonicalJson } from "../src/merge.js"

const lastCompaction: fc.Arbitrary<LastCompaction> = fc.record(
  {
    compactionId: fc.constantFrom("cmp_a", "cmp_b", "cmp_c"),
    ordinal: fc.integer({ min: 1, max: 4 }),
    at: fc.constantFrom(1000, 2000),
    seq: fc.integer({ min: 0, max: 8 }),
    tokensBefore: fc.constantFrom(150_000, 180_000),
    tokensAfter: fc.constantFrom(9_000, 12_000)
  },
  { requiredKeys: ["compactionId", "ordinal", "at"], noNullPrototype: true }
)

const lastRun: fc.Arbitrary<LastRun> = fc.record(
  {
    runId: fc.constantFrom("run_a", "run_b", "run_c"),
    outcome: fc.constantFrom("completed" as const, "timed_out" as const, "failed" as const),
    at: fc.constantFrom(1000, 2000),
    seq: fc.integer({ min: 0, max: 8 })
  },
  { noNullPrototype: true }
)

const tokens = fc.oneof(fc.constantFrom(1_000, 12_300, 181_000), fc.constant(null))

/** A Converge-shaped entry (normalized: `ownedFor`, when present, is its own `sessionId`). */
export const entry: fc.Arbitrary<SessionEntry> = fc
  .record(
    {
      sessionId: fc.constantFrom("s-a", "s-b"),
      generation: fc.integer({ min: 0, max: 2 }),
      sessionStartedAt: fc.constantFrom(0, 100, 200),
      owned: fc.boolean(),
      updatedAt: fc.integer({ min: 0, max: 9 }),
      compactionCount: fc.integer({ min: 0, max: 5 }),
      compactionBase: fc.integer({ min: 0, max: 3 }),
      inputTokens: tokens,
      outputTokens: tokens,
      totalTokens: tokens,
      totalTokensFresh: fc.boolean(),
      tokensAsOfSeq: fc.integer({ min: 0, max: 8 }),
      lastCompaction,
      lastRun,
      model: fc.constantFrom("claude-sonnet-4-5", "gpt-5"),
      deliveryContext: fc.record(
        { channel: fc.constantFrom("telegram", "discord") },
        { noNullPrototype: true }
      )
    },
    { requiredKeys: ["sessionId", "owned"], noNullPrototype: true }
  )
  .map(({ owned, ...rest }): SessionEntry => (owned ? { ...rest, ownedFor: rest.sessionId } : rest))

/** The owned fields of an entry, as a plain record (absent fields left out). */
export const ownedView = (e: SessionEntry): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const k of OWNED_FIELDS) if (e[k] !== undefined) out[k] = e[k]
  return out
}

const version = (e: SessionEntry) => [e.generation ?? 0, e.sessionStartedAt ?? 0, e.sessionId] as const
const versionKey = (e: SessionEntry) => JSON.stringify(version(e))
const lexGreater = (a: readonly [number, number, string], b: readonly [number, number, string]) =>
  a[0] !== b[0] ? a[0] > b[0] : a[1] !== b[1] ? a[1] > b[1] : a[2] > b[2]

/** The greatest element of `xs` by `key` (a list compared position by position). */
const best = <A>(xs: ReadonlyArray<A>, key: (x: A) => ReadonlyArray<number | string>): A | undefined => {
  let top: A | undefined
  let topKey: ReadonlyArray<number | string> = []
  for (const x of xs) {
    const k = key(x)
    let greater = top === undefined
    for (let i = 0; !greater && i < k.length; i++) {
      const a = k[i]!
      const b = topKey[i]!
      if (a === b) continue
      greater = a > b
      break
    }
    if (greater) {
      top = x
      topKey = k
    }
  }
  return top
}

const max = (xs: ReadonlyArray<number | undefined>): number | undefined => {
  const defined = xs.filter((x): x is number => x !== undefined)
  return defined.length === 0 ? undefined : Math.max(...defined)
}

/**
 * The owned fields the set `xs` must merge to, computed directly from DESIGN §2.4: the
 * greatest version's group wins; in it maxima, the snapshot with the greatest
 * (measured at all, `asOfSeq`, payload), the compaction with the greatest (ordinal, payload), the run with the
 * greatest (seq, payload); `updatedAt` the max of all; `totalTokensFresh` derived.
 */
export const referenceModel = (xs: ReadonlyArray<SessionEntry>): Record<string, unknown> => {
  const top = xs.reduce((a, b) => (lexGreater(version(b), version(a)) ? b : a))
  const group = xs.filter((x) => versionKey(x) === versionKey(top))
  const out: Record<string, unknown> = { sessionId: top.sessionId }
  const put = (k: string, v: unknown) => {
    if (v !== undefined) out[k] = v
  }
  put("generation", max(group.map((x) => x.generation)))
  put("sessionStartedAt", max(group.map((x) => x.sessionStartedAt)))
  put(
    "ownedFor",
    group.map((x) => x.ownedFor).find((x) => x !== undefined)
  )
  put("compactionCount", max(group.map((x) => x.compactionCount)))
  put("compactionBase", max(group.map((x) => x.compactionBase)))
  const snapshots = group
    .map((x) => ({
      tokensAsOfSeq: x.tokensAsOfSeq,
      totalTokens: x.totalTokens,
      inputTokens: x.inputTokens,
      outputTokens: x.outputTokens,
      totalTokensFresh: x.totalTokensFresh
    }))
    .filter((s) => Object.values(s).some((v) => v !== undefined))
  const payload = (s: (typeof snapshots)[number]) =>
    canonicalJson({
      tokensAsOfSeq: s.tokensAsOfSeq,
      totalTokens: s.totalTokens,
      inputTokens: s.inputTokens,
      outputTokens: s.outputTokens
    })
  // A snapshot with no measurement (only a freshness flag) is below every measurement.
  const measured = (s: (typeof snapshots)[number]) =>
    [s.tokensAsOfSeq, s.totalTokens, s.inputTokens, s.outputTokens].some((v) => v !== undefined) ? 1 : 0
  const snapshot = best(snapshots, (s) => [measured(s), s.tokensAsOfSeq ?? -1, payload(s)])
  if (snapshot !== undefined) {
    put("tokensAsOfSeq", snapshot.tokensAsOfSeq)
    put("totalTokens", snapshot.totalTokens)
    put("inputTokens", snapshot.inputTokens)
    put("outputTokens", snapshot.outputTokens)
    const flags = snapshots.filter((s) => payload(s) === payload(snapshot)).map((s) => s.totalTokensFresh)
    put("totalTokensFresh", flags.includes(true) ? true : flags.includes(false) ? false : undefined)
  }
  const lc = best(
    group.flatMap((x) => (x.lastCompaction === undefined ? [] : [x.lastCompaction])),
    (c) => [c.ordinal, canonicalJson(c)]
  )
  put("lastCompaction", lc)
  put(
    "lastRun",
    best(
      group.flatMap((x) => (x.lastRun === undefined ? [] : [x.lastRun])),
      (r) => [r.seq, canonicalJson(r)]
    )
  )
  put("updatedAt", max(xs.map((x) => x.updatedAt)))
  const asOf = out.tokensAsOfSeq
  if (typeof asOf === "number") out.totalTokensFresh = lc === undefined ? true : asOf >= (lc.seq ?? -1)
  else if (lc !== undefined) out.totalTokensFresh = false
  return out
}
