/**
 * A small least-recently-used map, bounded by entries and by a weight (bytes, say). The
 * bounded per-session caches of the runtime use it; evicting an entry calls `onEvict`, and
 * the owner rebuilds what it held from disk when it is next needed. Pure: no I/O, no clock.
 */

/** Options of `Lru.make`. */
export interface LruOptions<K, V> {
  /** At most this many entries (0: none are kept). */
  readonly maxEntries: number
  /** At most this total weight (default: no weight bound). */
  readonly maxWeight?: number
  /** The weight of a value, taken when it is set (default 0). */
  readonly weigh?: (value: V) => number
  /** Called for each entry evicted by a bound (not for `delete`). */
  readonly onEvict?: (key: K, value: V) => void
}

/** A least-recently-used map: `get` and `set` make an entry the most recent. */
export class Lru<K, V> {
  private readonly entries = new Map<K, { readonly value: V; readonly weight: number }>()
  private total = 0
  private evicted = 0

  constructor(private readonly options: LruOptions<K, V>) {}

  /** How many entries are kept. */
  get size(): number {
    return this.entries.size
  }

  /** The total weight kept. */
  get weight(): number {
    return this.total
  }

  /** How many entries the bounds have evicted so far. */
  get evictions(): number {
    return this.evicted
  }

  /** The value of `key`, made the most recent. */
  get(key: K): V | undefined {
    const found = this.entries.get(key)
    if (found === undefined) return undefined
    this.entries.delete(key)
    this.entries.set(key, found)
    return found.value
  }

  /** The value of `key`, without touching its recency. */
  peek(key: K): V | undefined {
    return this.entries.get(key)?.value
  }

  has(key: K): boolean {
    return this.entries.has(key)
  }

  /** Sets `key` (weighed now) as the most recent, then evicts the least recent past the bounds. */
  set(key: K, value: V): void {
    this.remove(key)
    const weight = this.options.weigh?.(value) ?? 0
    this.entries.set(key, { value, weight })
    this.total += weight
    this.trim()
  }

  /** Forgets `key`; true when it was there. `onEvict` is not called. */
  delete(key: K): boolean {
    return this.remove(key)
  }

  /** The entries from the least recent to the most recent. */
  *[Symbol.iterator](): IterableIterator<[K, V]> {
    for (const [k, e] of this.entries) yield [k, e.value]
  }

  /** Evicts least recent entries while a predicate holds for them (oldest first), e.g. expiry. */
  evictWhile(predicate: (key: K, value: V) => boolean): void {
    for (const [k, e] of this.entries) {
      if (!predicate(k, e.value)) return
      this.evict(k, e)
    }
  }

  private remove(key: K): boolean {
    const found = this.entries.get(key)
    if (found === undefined) return false
    this.entries.delete(key)
    this.total -= found.weight
    return true
  }

  private evict(key: K, entry: { readonly value: V; readonly weight: number }): void {
    this.entries.delete(key)
    this.total -= entry.weight
    this.evicted++
    this.options.onEvict?.(key, entry.value)
  }

  private trim(): void {
    const maxWeight = this.options.maxWeight ?? Number.POSITIVE_INFINITY
    for (const [k, e] of this.entries) {
      if (this.entries.size <= this.options.maxEntries && this.total <= maxWeight) return
      this.evict(k, e)
    }
  }
}
