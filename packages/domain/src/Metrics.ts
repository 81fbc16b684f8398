/**
 * Every metric Converge records, in one place: Effect `Metric`s in the global registry,
 * exported through OpenTelemetry (and served as Prometheus text by the gateway). Times are
 * milliseconds of the runtime's `Clock`. docs/operations.md explains each one.
 */
import { Effect, Metric, MetricBoundaries } from "effect"

/** 0.5 ms … ~9 min, doubling: turn, compaction and model latencies. */
const latencyBuckets = MetricBoundaries.exponential({ start: 0.5, factor: 2, count: 21 })
/** 0.05 ms … ~1.6 s, doubling: appends and flushes, which are a few file writes. */
const ioBuckets = MetricBoundaries.exponential({ start: 0.05, factor: 2, count: 16 })

const counter = (name: string, description: string) =>
  Metric.counter(name, { description, incremental: true })

/** Turns by `outcome` (completed, timed_out, failed) and `timeout` (turn, compactionWait, none). */
export const turns = counter("converge_turns", "Turns that ended, by outcome and timeout kind")
/** Turns refused before they ran, by `reason` (the error's tag: LaneFull, SessionLeased, …). */
export const turnsRefused = counter("converge_turns_refused", "Turns refused before they ran, by reason")
/** From submission to answer, lane wait included. */
export const turnDuration = Metric.histogram(
  "converge_turn_duration_ms",
  latencyBuckets,
  "Turn latency from submission to answer, in ms"
)
/** Compactions that ended, by `reason` (threshold, overflow, manual) and `outcome`. */
export const compactions = counter(
  "converge_compactions",
  "Compactions that ended, by reason and outcome (completed, skipped, timeout, cancelled, error, shutdown)"
)
/** From start to commit (or failure). */
export const compactionDuration = Metric.histogram(
  "converge_compaction_duration_ms",
  latencyBuckets,
  "Compaction duration from start to commit or failure, in ms"
)
/** The case Converge exists for: committed after everyone who waited on it had stopped waiting. */
export const lateCompletions = counter(
  "converge_late_completions_applied",
  "Compactions committed after every turn or request waiting on them had stopped waiting"
)
/** A turn or `/compact` that found a compaction running and joined it. */
export const compactionJoins = counter(
  "converge_compaction_joins",
  "Requests that joined a running compaction instead of starting one, by reason"
)
/** Turns waiting in their session's lane behind a running turn, over all sessions. */
export const laneWaiting = Metric.gauge("converge_lane_waiting", {
  description: "Turns queued behind a running turn, over all lanes"
})
/** Turns admitted and not yet ended (admission control counts these against its bound). */
export const turnsInFlight = Metric.gauge("converge_turns_in_flight", {
  description: "Turns admitted and not yet ended, over all sessions"
})
/** Sessions with a turn running. */
export const lanesBusy = Metric.gauge("converge_lanes_busy", { description: "Lanes with a turn running" })
/** One write of `sessions.json` (temp file, fsync, rename). */
export const storeFlushDuration = Metric.histogram(
  "converge_store_flush_duration_ms",
  ioBuckets,
  "Durable store flush latency, in ms"
)
/** Bytes written by store flushes. */
export const storeFlushBytes = counter("converge_store_flush_bytes", "Bytes written by store flushes")
/** One append to a transcript, fsync included. */
export const transcriptAppendDuration = Metric.histogram(
  "converge_transcript_append_duration_ms",
  ioBuckets,
  "Transcript append latency (write and fsync), in ms"
)
/** Open `GET /v1/events` connections. */
export const sseSubscribers = Metric.gauge("converge_sse_subscribers", {
  description: "Open server-sent event connections"
})
/** `Resync` events sent to consumers that fell behind. */
export const resyncs = counter("converge_resyncs_sent", "Resync events sent to consumers that fell behind")
/** Model calls that failed, by `kind` (context_overflow, transient, permanent). */
export const modelErrors = counter("converge_model_errors", "Model calls that failed, by kind")
/** Model calls made, by `purpose` (reply, summary). */
export const modelCalls = counter("converge_model_calls", "Model calls made, by purpose")

/** Tagged variants are made once: `Metric.tagged` builds a new key on every call. */
/** A counter of incremental numbers, as every counter here is. */
export type Counter = Metric.Metric.Counter<number>

const memo = (make: (value: string) => Counter): ((value: string) => Counter) => {
  const made = new Map<string, Counter>()
  return (value: string): Counter => {
    let m: Counter | undefined = made.get(value)
    if (m === undefined) {
      m = make(value)
      made.set(value, m)
    }
    return m
  }
}

/** The counter of turns that ended with `outcome` and `timeout`. */
export const turnsBy = memo((key: string) => {
  const [outcome, timeout] = key.split("/") as [string, string]
  return turns.pipe(Metric.tagged("outcome", outcome), Metric.tagged("timeout", timeout))
})
/** The counter of turns refused for `reason`. */
export const turnsRefusedBy = memo((reason: string) => turnsRefused.pipe(Metric.tagged("reason", reason)))
/** The counter of compactions of `reason` that ended with `outcome`. */
export const compactionsBy = memo((key: string) => {
  const [reason, outcome] = key.split("/") as [string, string]
  return compactions.pipe(Metric.tagged("reason", reason), Metric.tagged("outcome", outcome))
})
/** The counter of joins of compactions started for `reason`. */
export const compactionJoinsBy = memo((reason: string) =>
  compactionJoins.pipe(Metric.tagged("reason", reason))
)
/** The counter of model errors of `kind`. */
export const modelErrorsBy = memo((kind: string) => modelErrors.pipe(Metric.tagged("kind", kind)))
/** The counter of model calls for `purpose`. */
export const modelCallsBy = memo((purpose: string) => modelCalls.pipe(Metric.tagged("purpose", purpose)))

/**
 * Registers every metric with its usual labels at zero, so a scrape lists them all before
 * the first turn (the registry only knows a metric once it has been touched).
 */
export const registerAll: Effect.Effect<void> = Effect.sync(() => {
  for (const outcome of ["completed/none", "timed_out/turn", "timed_out/compactionWait", "failed/none"]) {
    turnsBy(outcome).unsafeUpdate(0, [])
  }
  for (const reason of ["threshold", "overflow", "manual"]) {
    compactionsBy(`${reason}/completed`).unsafeUpdate(0, [])
    compactionJoinsBy(reason).unsafeUpdate(0, [])
  }
  for (const m of [lateCompletions, storeFlushBytes, resyncs]) m.unsafeUpdate(0, [])
  for (const m of [laneWaiting, lanesBusy, turnsInFlight, sseSubscribers]) m.unsafeValue([])
  for (const m of [turnDuration, compactionDuration, storeFlushDuration, transcriptAppendDuration]) {
    m.unsafeValue([])
  }
  for (const purpose of ["reply", "summary"]) modelCallsBy(purpose).unsafeUpdate(0, [])
  for (const kind of ["context_overflow", "transient", "permanent"]) modelErrorsBy(kind).unsafeUpdate(0, [])
  for (const reason of ["LaneFull", "Overloaded"]) turnsRefusedBy(reason).unsafeUpdate(0, [])
})
