import type { SessionEntry } from "@converge/domain"
import { describe, expect, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import {
  canonicalJson,
  compareVersion,
  isForeignReset,
  mergeEntries,
  mergeFileWithMemory,
  normalizeForeignReset
} from "../src/merge.js"
import { entry, ownedView, referenceModel } from "./arbitraries.js"

const owned = (e: SessionEntry) => ownedView(e)
const runs = { fastCheck: { numRuns: 1_000 } }

describe("merge laws on the owned fields (property)", () => {
  it.prop(
    "merge is commutative",
    [entry, entry],
    ([a, b]) => {
      expect(owned(mergeEntries(a, b))).toEqual(owned(mergeEntries(b, a)))
    },
    runs
  )

  it.prop(
    "merge is associative",
    [entry, entry, entry],
    ([a, b, c]) => {
      expect(owned(mergeEntries(mergeEntries(a, b), c))).toEqual(owned(mergeEntries(a, mergeEntries(b, c))))
    },
    runs
  )

  it.prop(
    "merge is idempotent",
    [entry, entry],
    ([a, b]) => {
      const ab = mergeEntries(a, b)
      expect(mergeEntries(ab, ab)).toEqual(ab)
      expect(owned(mergeEntries(ab, b))).toEqual(owned(ab))
      expect(owned(mergeEntries(a, ab))).toEqual(owned(ab))
    },
    runs
  )

  it.prop(
    "any permutation of any multiset of patches, duplicates and resets included, gives the reference model's state",
    [
      fc.array(entry, { minLength: 1, maxLength: 8 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      fc.array(fc.nat(), { minLength: 16, maxLength: 16 })
    ],
    ([patches, duplicates, order]) => {
      const multiset = [...patches, ...duplicates.map((i) => patches[i % patches.length]!)]
      const permuted = multiset
        .map((p, i) => ({ p, k: order[i % order.length]! * 31 + i }))
        .sort((x, y) => x.k - y.k)
        .map((x) => x.p)
      // A lone entry is normalized by merging it with itself, as the store does with a first patch.
      const folded = permuted.reduce(
        (acc, p) => mergeEntries(acc, p),
        mergeEntries(permuted[0]!, permuted[0]!)
      )
      expect(owned(folded)).toEqual(referenceModel(patches))
      // Folded the other way round, as a balanced tree: the same state.
      const tree = (xs: ReadonlyArray<SessionEntry>): SessionEntry =>
        xs.length === 1
          ? mergeEntries(xs[0]!, xs[0]!)
          : mergeEntries(tree(xs.slice(0, xs.length >> 1)), tree(xs.slice(xs.length >> 1)))
      expect(owned(tree([...permuted].reverse()))).toEqual(referenceModel(patches))
    },
    runs
  )
})

const base: SessionEntry = {
  sessionId: "s-1",
  generation: 1,
  sessionStartedAt: 100,
  ownedFor: "s-1",
  updatedAt: 500,
  compactionCount: 3,
  compactionBase: 0,
  totalTokens: 12_000,
  tokensAsOfSeq: 20,
  totalTokensFresh: true,
  lastCompaction: { compactionId: "cmp_3", ordinal: 3, at: 400, seq: 18 },
  model: "claude-sonnet-4-5",
  deliveryContext: { channel: "telegram", to: "user:4242" }
}

describe("merge rules (DESIGN §2.4)", () => {
  it("compares versions by generation, then sessionStartedAt, then sessionId; absent numbers are 0", () => {
    expect(compareVersion({ sessionId: "b", generation: 1 }, { sessionId: "a", generation: 2 })).toBeLessThan(
      0
    )
    expect(
      compareVersion({ sessionId: "b", sessionStartedAt: 5 }, { sessionId: "a", sessionStartedAt: 9 })
    ).toBeLessThan(0)
    expect(compareVersion({ sessionId: "b" }, { sessionId: "a" })).toBeGreaterThan(0)
    expect(compareVersion({ sessionId: "a" }, { sessionId: "a", generation: 0, sessionStartedAt: 0 })).toBe(0)
  })

  it("a greater version replaces the owned fields whole and keeps the unowned ones (a reset)", () => {
    const reset = mergeEntries(base, {
      sessionId: "s-2",
      generation: 2,
      sessionStartedAt: 900,
      ownedFor: "s-2",
      compactionCount: 0,
      compactionBase: 0,
      updatedAt: 900
    })
    expect(reset).toEqual({
      sessionId: "s-2",
      generation: 2,
      sessionStartedAt: 900,
      ownedFor: "s-2",
      updatedAt: 900,
      compactionCount: 0,
      compactionBase: 0,
      model: "claude-sonnet-4-5",
      deliveryContext: { channel: "telegram", to: "user:4242" }
    })
  })

  it("a late completion of an older generation changes nothing", () => {
    const late = mergeEntries(base, {
      sessionId: "s-0",
      generation: 0,
      compactionCount: 9,
      lastCompaction: { compactionId: "old", ordinal: 9, at: 1, seq: 99 },
      totalTokens: 1,
      tokensAsOfSeq: 99
    })
    expect(owned(late)).toEqual(owned(base))
  })

  it("counts merge as maxima and never go down", () => {
    const merged = mergeEntries(base, {
      sessionId: "s-1",
      generation: 1,
      sessionStartedAt: 100,
      compactionCount: 2,
      compactionBase: 1
    })
    expect(merged.compactionCount).toBe(3)
    expect(merged.compactionBase).toBe(1)
  })

  it("a snapshot measured before the compaction never overwrites the post-compaction one (S5)", () => {
    const stale = mergeEntries(base, {
      sessionId: "s-1",
      generation: 1,
      sessionStartedAt: 100,
      totalTokens: 181_000,
      inputTokens: 180_000,
      tokensAsOfSeq: 17
    })
    expect(stale.totalTokens).toBe(12_000)
    expect(stale.inputTokens).toBeUndefined()
    expect(stale.tokensAsOfSeq).toBe(20)
    expect(stale.totalTokensFresh).toBe(true)
  })

  it("a snapshot holding only a freshness flag loses to any measurement, in either order", () => {
    // Found by the permutation property (seed 1679490322): a normalized entry with a compaction
    // and no tokens carries totalTokensFresh: false, and its empty payload sorted above a
    // measurement's, so merging it first dropped the measurement.
    const tokens: SessionEntry = { sessionId: "s-b", generation: 2, sessionStartedAt: 100, totalTokens: 1000 }
    const compacted: SessionEntry = {
      sessionId: "s-b",
      generation: 2,
      sessionStartedAt: 100,
      lastCompaction: { compactionId: "cmp_a", ordinal: 1, at: 1000 }
    }
    const normalized = mergeEntries(compacted, compacted)
    expect(normalized.totalTokensFresh).toBe(false)
    expect(mergeEntries(normalized, tokens).totalTokens).toBe(1000)
    expect(mergeEntries(tokens, normalized).totalTokens).toBe(1000)
  })

  it("a snapshot without tokensAsOfSeq counts as −1 and loses to any measurement", () => {
    const openclaw: SessionEntry = {
      sessionId: "s-1",
      totalTokens: 181_000,
      inputTokens: 12_000,
      totalTokensFresh: true
    }
    const measured = mergeEntries(openclaw, {
      sessionId: "s-1",
      generation: 0,
      sessionStartedAt: 0,
      totalTokens: 12_300,
      tokensAsOfSeq: 23
    })
    expect(measured.totalTokens).toBe(12_300)
    expect(measured.inputTokens).toBeUndefined()
    expect(measured.tokensAsOfSeq).toBe(23)
  })

  it("derives totalTokensFresh from tokensAsOfSeq and the last compaction's seq", () => {
    const compaction = { compactionId: "cmp_4", ordinal: 4, at: 600, seq: 30 }
    const after = mergeEntries(base, {
      sessionId: "s-1",
      generation: 1,
      sessionStartedAt: 100,
      lastCompaction: compaction
    })
    expect(after.totalTokensFresh).toBe(false)
    const measured = mergeEntries(after, {
      sessionId: "s-1",
      generation: 1,
      sessionStartedAt: 100,
      totalTokens: 9_000,
      tokensAsOfSeq: 30
    })
    expect(measured.totalTokensFresh).toBe(true)
    // OpenClaw's own flag stays while nothing measured or compacted is known.
    expect(
      mergeEntries({ sessionId: "x", totalTokensFresh: false }, { sessionId: "x" }).totalTokensFresh
    ).toBe(false)
  })

  it("lastCompaction by ordinal and lastRun by seq, ties broken by the payload order", () => {
    const a = { compactionId: "cmp_a", ordinal: 4, at: 600, seq: 30 }
    const b = { compactionId: "cmp_b", ordinal: 4, at: 600, seq: 30 }
    const v = { sessionId: "s-1", generation: 1, sessionStartedAt: 100 }
    expect(mergeEntries({ ...v, lastCompaction: a }, { ...v, lastCompaction: b }).lastCompaction).toEqual(b)
    expect(mergeEntries({ ...v, lastCompaction: b }, { ...v, lastCompaction: a }).lastCompaction).toEqual(b)
    const r1 = { runId: "run_1", outcome: "completed" as const, at: 10, seq: 40 }
    const r2 = { runId: "run_2", outcome: "timed_out" as const, at: 5, seq: 41 }
    expect(mergeEntries({ ...v, lastRun: r2 }, { ...v, lastRun: r1 }).lastRun).toEqual(r2)
  })

  it("updatedAt is a max over activity, whatever the version", () => {
    expect(mergeEntries(base, { sessionId: "s-0", generation: 0, updatedAt: 999 }).updatedAt).toBe(999)
    expect(mergeEntries(base, { sessionId: "s-1", generation: 1, sessionStartedAt: 100 }).updatedAt).toBe(500)
  })

  it("an OpenClaw-native entry merges field by field with patches of version (0, 0, sessionId)", () => {
    const native: SessionEntry = {
      sessionId: "n-1",
      updatedAt: 1,
      compactionCount: 2,
      totalTokens: 5000,
      sendPolicy: "allow"
    }
    const merged = mergeEntries(native, {
      sessionId: "n-1",
      generation: 0,
      sessionStartedAt: 0,
      ownedFor: "n-1",
      compactionBase: 2
    })
    expect(merged).toMatchObject({
      compactionCount: 2,
      compactionBase: 2,
      totalTokens: 5000,
      sendPolicy: "allow",
      ownedFor: "n-1"
    })
  })

  it("keeps the key order of the entry it merges into", () => {
    const merged = mergeEntries(base, {
      sessionId: "s-1",
      generation: 1,
      sessionStartedAt: 100,
      compactionCount: 4,
      extra: 1
    })
    expect(Object.keys(merged)).toEqual([...Object.keys(base), "extra"])
  })

  it("canonical JSON sorts keys at every depth", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[1,{"y":2,"z":1}]},"b":1}'
    )
  })
})

describe("foreign resets (OpenClaw's /new)", () => {
  const rewritten: SessionEntry = { ...base, sessionId: "s-new", updatedAt: 800 }

  it("an entry whose sessionId differs from its ownedFor is a reset whatever generation it carries (S18)", () => {
    expect(isForeignReset(rewritten, undefined)).toBe(true)
    const normalized = normalizeForeignReset({ ...rewritten, generation: 7 }, "s-1", 1)
    expect(normalized).toEqual({
      sessionId: "s-new",
      generation: 8,
      sessionStartedAt: 800,
      ownedFor: "s-new",
      updatedAt: 800,
      compactionCount: 3,
      compactionBase: 3,
      model: "claude-sonnet-4-5",
      deliveryContext: { channel: "telegram", to: "user:4242" }
    })
    // The late completion of the old session changes nothing afterwards.
    const late = mergeEntries(normalized, {
      sessionId: "s-1",
      generation: 1,
      sessionStartedAt: 100,
      compactionCount: 4,
      lastCompaction: { compactionId: "cmp_4", ordinal: 4, at: 900, seq: 30 }
    })
    expect(owned(late)).toEqual(owned(normalized))
  })

  it("without ownedFor, a sessionId that differs from the one known for the key is a reset", () => {
    const native: SessionEntry = {
      sessionId: "n-2",
      updatedAt: 50,
      compactionCount: 1,
      lastChannel: "discord"
    }
    expect(isForeignReset(native, "n-1")).toBe(true)
    expect(isForeignReset(native, "n-2")).toBe(false)
    expect(isForeignReset(native, undefined)).toBe(false)
    expect(normalizeForeignReset(native, "n-1", 0)).toMatchObject({
      generation: 1,
      ownedFor: "n-2",
      compactionBase: 1,
      lastChannel: "discord"
    })
  })

  it("normalizes once: a normalized entry is left as it is", () => {
    const once = normalizeForeignReset(rewritten, "s-1", 1)
    expect(normalizeForeignReset(once, "s-1", 1)).toBe(once)
    expect(normalizeForeignReset(base, "s-1", 1)).toBe(base)
  })
})

describe("three-way rule for unowned fields (merge-on-flush)", () => {
  const memoryEntry: SessionEntry = { ...base, model: "gpt-5", compactionCount: 4 }
  const fileEntry: SessionEntry = {
    ...base,
    lastChannel: "discord",
    deliveryContext: { channel: "discord" },
    updatedAt: 600
  }

  it("a field this process changed keeps its value; one it did not takes the file's", () => {
    const merged = mergeFileWithMemory(fileEntry, memoryEntry, base)
    expect(merged.model).toBe("gpt-5")
    expect(merged.lastChannel).toBe("discord")
    expect(merged.deliveryContext).toEqual({ channel: "discord" })
    expect(merged.compactionCount).toBe(4)
    expect(merged.updatedAt).toBe(600)
  })

  it("a field another writer removed stays removed unless this process changed it", () => {
    const { deliveryContext: _, ...withoutContext } = base
    expect(mergeFileWithMemory(withoutContext, base, base).deliveryContext).toBeUndefined()
    const mine = { ...base, deliveryContext: { channel: "slack" } }
    expect(mergeFileWithMemory(withoutContext, mine, base).deliveryContext).toEqual({ channel: "slack" })
  })

  it("with no base (the key was never read), memory's fields win and the file's others are kept", () => {
    const merged = mergeFileWithMemory(fileEntry, memoryEntry, undefined)
    expect(merged.model).toBe("gpt-5")
    expect(merged.lastChannel).toBe("discord")
  })
})
