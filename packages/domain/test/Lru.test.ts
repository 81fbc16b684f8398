import { describe, expect, it } from "@effect/vitest"
import { Lru } from "../src/index.js"

describe("Lru", () => {
  it("evicts the least recently used entry past the entry bound", () => {
    const evicted: Array<string> = []
    const lru = new Lru<string, number>({ maxEntries: 2, onEvict: (k) => evicted.push(k) })
    lru.set("a", 1)
    lru.set("b", 2)
    expect(lru.get("a")).toBe(1)
    lru.set("c", 3)
    expect(evicted).toEqual(["b"])
    expect([...lru].map(([k]) => k)).toEqual(["a", "c"])
    expect(lru.size).toBe(2)
    expect(lru.evictions).toBe(1)
  })

  it("keeps the total weight under its bound and re-weighs an entry set again", () => {
    const lru = new Lru<string, { bytes: number }>({
      maxEntries: 10,
      maxWeight: 100,
      weigh: (v) => v.bytes
    })
    lru.set("a", { bytes: 60 })
    lru.set("b", { bytes: 30 })
    expect(lru.weight).toBe(90)
    lru.set("b", { bytes: 50 })
    expect(lru.has("a")).toBe(false)
    expect(lru.weight).toBe(50)
    lru.set("huge", { bytes: 500 })
    expect(lru.size).toBe(0)
    expect(lru.weight).toBe(0)
  })

  it("peek does not touch recency; delete does not count as an eviction", () => {
    const lru = new Lru<string, number>({ maxEntries: 2 })
    lru.set("a", 1)
    lru.set("b", 2)
    expect(lru.peek("a")).toBe(1)
    lru.set("c", 3)
    expect(lru.has("a")).toBe(false)
    expect(lru.delete("b")).toBe(true)
    expect(lru.delete("b")).toBe(false)
    expect(lru.evictions).toBe(1)
  })

  it("evictWhile drops the oldest entries while the predicate holds", () => {
    const lru = new Lru<string, number>({ maxEntries: 10 })
    for (const [k, v] of [
      ["a", 1],
      ["b", 2],
      ["c", 10],
      ["d", 3]
    ] as const)
      lru.set(k, v)
    lru.evictWhile((_, v) => v < 5)
    expect([...lru].map(([k]) => k)).toEqual(["c", "d"])
  })

  it("a bound of zero keeps nothing", () => {
    const lru = new Lru<string, number>({ maxEntries: 0 })
    lru.set("a", 1)
    expect(lru.size).toBe(0)
  })
})
