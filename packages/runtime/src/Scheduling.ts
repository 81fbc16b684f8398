/**
 * A scheduler that keeps the event loop turning under load. Effect's default scheduler runs
 * the fibers' tasks in microtasks, each fiber switching to a timer only after 2,048 drains in a
 * row: with a thousand busy fibers the microtask queue hardly empties, so the event loop's
 * other phases wait — timers (a turn's deadline), sockets (a new request to refuse), file
 * system callbacks. Under overload that wait is what makes a refusal slow and an admitted turn
 * overshoot its timeout, not the work itself.
 *
 * This one runs every fiber's tasks from one queue, in microtasks, for at most `sliceMs` at a
 * time; then it lets the event loop run one turn (`setImmediate`) before it goes on. The work is
 * the same; it is cut into slices the event loop can come between.
 */
import { Layer, Scheduler } from "effect"

/** The default slice: a refusal or a deadline waits at most about this long for its turn. */
export const defaultSliceMs = 2

/**
 * Runs tasks in microtasks, for at most `sliceMs` before the event loop gets a turn. One FIFO
 * queue for every fiber; scheduling priorities are not used (Converge sets none). The time is
 * looked at after every task, so a slice ends within one task of its bound.
 */
export class SlicedScheduler implements Scheduler.Scheduler {
  private queue: Array<Scheduler.Task> = []
  private head = 0
  private running = false
  private sliceStart = 0

  constructor(readonly sliceMs: number = defaultSliceMs) {}

  shouldYield(fiber: Parameters<Scheduler.Scheduler["shouldYield"]>[0]): number | false {
    return Scheduler.defaultShouldYield(fiber)
  }

  scheduleTask(task: Scheduler.Task, _priority: number): void {
    this.queue.push(task)
    if (this.running) return
    this.running = true
    this.sliceStart = performance.now()
    queueMicrotask(this.drain)
  }

  private readonly resume = (): void => {
    this.sliceStart = performance.now()
    this.drain()
  }

  private readonly drain = (): void => {
    const queue = this.queue
    while (this.head < queue.length) {
      const task = queue[this.head]!
      queue[this.head++] = undefined as unknown as Scheduler.Task
      task()
      if (performance.now() - this.sliceStart >= this.sliceMs) break
    }
    if (this.head >= queue.length) {
      this.queue = []
      this.head = 0
      this.running = false
      return
    }
    // Drop what ran from the front now and then, so the queue does not grow without end.
    if (this.head > 4096) {
      this.queue = queue.slice(this.head)
      this.head = 0
    }
    setImmediate(this.resume)
  }
}

/** The fibers of a runtime built with this layer run on a `SlicedScheduler`. */
export const layerSliced = (sliceMs: number = defaultSliceMs): Layer.Layer<never> =>
  Layer.setScheduler(new SlicedScheduler(sliceMs))
