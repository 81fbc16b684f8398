/**
 * Admission control of turns: past saturation a turn is refused at once (`Overloaded`) instead
 * of being accepted to time out in a queue that grows until every turn misses its deadline.
 *
 * The rule (docs/admission.md): a turn is admitted when fewer than `maxTurns` are in flight and
 * the turns already admitted would be done within the admission budget plus the time a turn
 * spends waiting on others (the model, a running compaction). By Little's law the turns in
 * flight take `inFlight / capacity` to end, with `capacity` the completions per second measured
 * in windows when the runner was saturated; so at most `capacity × (budget + externalMs)` are
 * admitted, `externalMs` being the mean time a turn waited on the model and on compactions. A
 * runner that is slow because its model is slow is not overloaded: its bound grows with the
 * model's latency. Until a saturated window has been measured, at most `initialTurns` are in
 * flight. Pure: the caller gives the time of each call.
 */

/** Settings of an `AdmissionControl`. */
export interface AdmissionSettings {
  /** At most this many turns admitted and not yet ended (running or queued in a lane). */
  readonly maxTurns: number
  /** Admit while the turns in flight would be done within this many ms (0: only `maxTurns`). */
  readonly budgetMs: number
  /** Completions are counted over windows of this length (default 100 ms). */
  readonly windowMs?: number
  /** The in-flight bound before any capacity was measured (default 64). */
  readonly initialTurns?: number
}

/** What `admit` decided. */
export type Admission =
  | { readonly admitted: true }
  | {
      readonly admitted: false
      /** When a retry may be admitted: the time the turns in flight need to end. */
      readonly retryAfterMs: number
      /** `lane`: the turns of its session before it would not end within the budget. */
      readonly reason: "maxTurns" | "budget" | "lane"
    }

/** A snapshot of the controller (metrics, tests). */
export interface AdmissionStats {
  readonly inFlight: number
  /** Turns per second at saturation, as measured; undefined before the first saturated window. */
  readonly capacity: number | undefined
  /** The in-flight bound the budget allows now. */
  readonly limit: number
  /** Mean ms a turn waited on the model and on compactions. */
  readonly externalMs: number
  readonly admitted: number
  readonly refused: number
}

const ADMITTED: Admission = { admitted: true }

/** The admission state of one runner. Not thread-safe by design: Effect runs it on one thread. */
export class AdmissionControl {
  private inFlight = 0
  private capacity: number | undefined = undefined
  private windowStart: number
  private completions = 0
  /** Whether the window ever had the in-flight bound reached (then its rate measures capacity). */
  private saturated = false
  private admittedTotal = 0
  private refusedTotal = 0
  /** Mean ms a turn waited on the model and on compactions (exponentially weighted). */
  private externalMs = 0
  private readonly windowMs: number
  private readonly initialTurns: number
  /** The window's served turns: how many, and the sum of their time in the runner not waiting on others. */
  private sojourns = 0
  private sojournSumMs = 0
  /** The budget of the last admission (its turn's timeout may have shortened it). */
  private lastBudgetMs: number
  /** How long a turn has lately been in the runner, not waiting on others (ms, smoothed by window). */
  private sojournMs: number | undefined = undefined

  constructor(
    private readonly settings: AdmissionSettings,
    now: number
  ) {
    this.windowMs = settings.windowMs ?? 100
    this.initialTurns = settings.initialTurns ?? 64
    this.windowStart = now
    this.lastBudgetMs = settings.budgetMs
  }

  /** The time a turn of `timeoutMs` may wait to start: at most half its own timeout. */
  private budgetFor(timeoutMs: number): number {
    return Math.min(this.settings.budgetMs, timeoutMs / 2)
  }

  /** The in-flight bound of `budgetMs` (or of this turn's own timeout, when shorter). */
  private limitFor(timeoutMs: number): number {
    if (this.settings.budgetMs === 0) return this.settings.maxTurns
    // A turn admitted at the bound starts within the budget and must still have time to run:
    // at most half its own timeout is spent waiting to start.
    const budget = this.budgetFor(timeoutMs)
    if (Number.isFinite(timeoutMs)) this.lastBudgetMs = budget
    const byBudget =
      this.capacity === undefined
        ? this.initialTurns
        : Math.floor((this.capacity * (budget + this.externalMs)) / 1000)
    // One turn at a time is always admitted: a runner that admits nothing measures nothing.
    return Math.max(1, Math.min(this.settings.maxTurns, byBudget))
  }

  /** Closes the windows that ended by `now`; a saturated window's rate updates the capacity. */
  private roll(now: number): void {
    const elapsed = now - this.windowStart
    if (elapsed < this.windowMs) return
    const rate = (this.completions * 1000) / elapsed
    if (this.capacity === undefined) {
      if (this.saturated && this.completions > 0) this.capacity = rate
    } else if (this.saturated || rate > this.capacity) {
      // Saturated, the rate is what the runner can do now (a slower disk, a heavier model); a
      // window that did more than the estimate says it can do at least that. Both smoothly:
      // completions come in bursts (a lane hands over, a batch of appends lands at once).
      this.capacity = Math.max(1, 0.7 * this.capacity + 0.3 * rate)
    }
    // Little's law the other way round: turns that spent longer than the budget in the runner
    // say the bound admitted more than it can do in the budget (a burst of completions read as
    // capacity). The estimate is cut by the ratio, at most by half a window, as those turns
    // were admitted a while ago under the bound then.
    if (this.sojourns > 0) {
      const sojournMs = this.sojournSumMs / this.sojourns
      this.sojournMs = this.sojournMs === undefined ? sojournMs : 0.7 * this.sojournMs + 0.3 * sojournMs
      if (this.capacity !== undefined && this.settings.budgetMs > 0 && sojournMs > this.lastBudgetMs)
        this.capacity = Math.max(1, this.capacity * Math.max(0.5, this.lastBudgetMs / sojournMs))
    }
    this.windowStart = now
    this.completions = 0
    this.sojourns = 0
    this.sojournSumMs = 0
    this.saturated = this.inFlight >= this.limitFor(Number.POSITIVE_INFINITY)
  }

  /** Turns admitted and not yet ended. */
  get turnsInFlight(): number {
    return this.inFlight
  }

  /**
   * Admits a turn whose timeout is `timeoutMs`, or says why not and when to retry. `ahead`: the
   * turns of its session already running or queued before it (its lane). Such a turn starts only
   * once they have ended: while the runner is saturated it is refused when the time they and it
   * take in the runner would pass the budget (the session sends faster than it is answered).
   */
  admit(now: number, timeoutMs: number = Number.POSITIVE_INFINITY, ahead = 0): Admission {
    this.roll(now)
    const limit = this.limitFor(timeoutMs)
    if (ahead > 0 && this.saturated && this.settings.budgetMs > 0 && this.sojournMs !== undefined) {
      const budget = this.budgetFor(timeoutMs)
      // The turn running in the lane is halfway through, on average.
      const startsInMs = (ahead - 0.5) * this.sojournMs
      if (startsInMs + this.sojournMs > budget) {
        this.refusedTotal++
        return {
          admitted: false,
          retryAfterMs: Math.max(this.windowMs, Math.min(60_000, Math.ceil(startsInMs))),
          reason: "lane"
        }
      }
    }
    if (this.inFlight < limit) {
      this.inFlight++
      this.admittedTotal++
      if (this.inFlight >= limit) this.saturated = true
      return ADMITTED
    }
    this.saturated = true
    this.refusedTotal++
    const reason = this.inFlight >= this.settings.maxTurns ? "maxTurns" : "budget"
    // The time the turns past the bound need to end, at the measured capacity (a window if unknown).
    const drainMs =
      this.capacity === undefined
        ? this.windowMs
        : Math.ceil(((this.inFlight - limit + 1) * 1000) / this.capacity)
    return { admitted: false, retryAfterMs: Math.max(this.windowMs, Math.min(60_000, drainMs)), reason }
  }

  /**
   * An admitted turn ended, having waited `externalMs` on others, `sojournMs` after it was
   * admitted (when known). Only a turn that was `served` (it ran to its end, not stopped by its
   * deadline) counts as work done: turns timing out together would otherwise read as a burst
   * of capacity. Every turn's time in the runner counts, a timed-out one's too.
   */
  release(now: number, externalMs = 0, served = true, sojournMs?: number): void {
    this.roll(now)
    if (this.inFlight > 0) this.inFlight--
    if (sojournMs !== undefined) {
      this.sojourns++
      this.sojournSumMs += Math.max(0, sojournMs - externalMs)
    }
    if (!served) return
    this.completions++
    this.externalMs += 0.1 * (externalMs - this.externalMs)
  }

  stats(now: number): AdmissionStats {
    this.roll(now)
    return {
      inFlight: this.inFlight,
      capacity: this.capacity,
      limit: this.limitFor(Number.POSITIVE_INFINITY),
      externalMs: this.externalMs,
      admitted: this.admittedTotal,
      refused: this.refusedTotal
    }
  }
}
