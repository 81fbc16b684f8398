/**
 * Turn deadlines: one fiber for all turns instead of a timer and a race per turn. It sleeps
 * until the earliest deadline of a turn still running and then runs that turn's `onDue`; a
 * turn that ends first only marks its entry done, so it is skipped. Nothing sleeps while no
 * turn runs.
 */
import { Clock, Effect, FiberHandle, type Scope } from "effect"

/** One turn's deadline. */
export interface Deadline {
  readonly at: number
  /** Set when the turn ended (or its deadline was handled): the entry is skipped. */
  done: boolean
  readonly onDue: Effect.Effect<void>
}

interface Slot {
  readonly deadline: Deadline
  readonly order: number
}

/** A binary min-heap of deadlines by `at`; equal deadlines come out in insertion order. */
export class DeadlineHeap {
  private readonly slots: Array<Slot> = []
  private inserted = 0

  get size(): number {
    return this.slots.length
  }

  push(deadline: Deadline): void {
    const slots = this.slots
    slots.push({ deadline, order: this.inserted++ })
    let i = slots.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.less(i, parent)) break
      this.swap(i, parent)
      i = parent
    }
  }

  /** Drops the entries that are done (kept lazily until then), keeping the others' order. */
  compact(): void {
    const live = this.slots.filter((slot) => !slot.deadline.done)
    this.slots.length = 0
    for (const slot of live.sort((x, y) => x.deadline.at - y.deadline.at || x.order - y.order))
      this.slots.push(slot)
  }

  peek(): Deadline | undefined {
    return this.slots[0]?.deadline
  }

  pop(): Deadline | undefined {
    const slots = this.slots
    const top = slots[0]
    const last = slots.pop()
    if (top === undefined || last === undefined) return undefined
    if (slots.length > 0) {
      slots[0] = last
      let i = 0
      for (;;) {
        const left = 2 * i + 1
        const right = left + 1
        let least = i
        if (left < slots.length && this.less(left, least)) least = left
        if (right < slots.length && this.less(right, least)) least = right
        if (least === i) break
        this.swap(i, least)
        i = least
      }
    }
    return top.deadline
  }

  private less(a: number, b: number): boolean {
    const x = this.slots[a]!
    const y = this.slots[b]!
    return x.deadline.at < y.deadline.at || (x.deadline.at === y.deadline.at && x.order < y.order)
  }

  private swap(a: number, b: number): void {
    const slots = this.slots
    const t = slots[a]!
    slots[a] = slots[b]!
    slots[b] = t
  }
}

/** The deadlines of a runtime: `add` one; its `onDue` runs when `at` comes unless it was `cancel`led. */
export interface Deadlines {
  readonly add: (at: number, onDue: Effect.Effect<void>) => Effect.Effect<Deadline>
  /** Marks the deadline done: its turn ended first. */
  readonly cancel: (deadline: Deadline) => void
}

/** Deadlines whose one sleeping fiber lives in the caller's scope. */
export const makeDeadlines: Effect.Effect<Deadlines, never, Scope.Scope> = Effect.gen(function* () {
  const heap = new DeadlineHeap()
  const sleeper = yield* FiberHandle.make<void, never>()
  // When the sleeping fiber wakes next (Infinity: there is none).
  let wakeAt = Number.POSITIVE_INFINITY
  // Entries cancelled but still in the heap: dropped in one pass once they are most of it.
  let cancelled = 0

  const loop: Effect.Effect<void> = Effect.gen(function* () {
    for (;;) {
      const now = yield* Clock.currentTimeMillis
      // Taking the due entries and running their `onDue` is one uninterruptible step: `add`
      // restarts this fiber (interrupting it), and an entry popped but not yet run would be lost
      // (its turn would never time out), or an `onDue` stopped halfway.
      yield* Effect.uninterruptible(
        Effect.suspend(() => {
          const due: Array<Deadline> = []
          for (
            let next = heap.peek();
            next !== undefined && (next.done || next.at <= now);
            next = heap.peek()
          ) {
            heap.pop()
            if (next.done) {
              cancelled = Math.max(0, cancelled - 1)
              continue
            }
            next.done = true
            due.push(next)
          }
          return due.length === 0 ? Effect.void : Effect.forEach(due, (d) => d.onDue, { discard: true })
        })
      )
      const next = heap.peek()
      if (next === undefined) {
        wakeAt = Number.POSITIVE_INFINITY
        return
      }
      wakeAt = next.at
      yield* Effect.sleep(next.at - now)
    }
  })

  const add = (at: number, onDue: Effect.Effect<void>): Effect.Effect<Deadline> =>
    Effect.suspend(() => {
      const deadline: Deadline = { at, done: false, onDue }
      heap.push(deadline)
      if (at >= wakeAt) return Effect.succeed(deadline)
      // Earlier than the sleeper's wake-up (or none sleeps): start it over. Forked
      // interruptible, whatever region the caller is in, so the scope can close it.
      wakeAt = at
      return Effect.as(FiberHandle.run(sleeper, Effect.interruptible(loop)), deadline)
    })

  const cancel = (deadline: Deadline): void => {
    if (deadline.done) return
    deadline.done = true
    cancelled++
    // Long timeouts keep ended turns in the heap for long: drop them once they are most of it.
    if (cancelled > 1024 && cancelled * 2 > heap.size) {
      heap.compact()
      cancelled = 0
    }
  }

  return { add, cancel }
})
