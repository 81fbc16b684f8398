/**
 * The events downstream consumers (SSE, UI, the facade's `subscribe`) receive.
 * No state rides on them: the Reconciler has already applied each one when it is published.
 */
import { Schema } from "effect"
import { TurnOutcome } from "./SessionEntry.js"

const base = {
  sessionKey: Schema.String,
  sessionId: Schema.String,
  generation: Schema.Number,
  at: Schema.Number
}

/** Which bound ended a turn. */
export const TimeoutKind = Schema.Literal("turn", "compactionWait")
export type TimeoutKind = typeof TimeoutKind.Type

export const CompactionReason = Schema.Literal("threshold", "overflow", "manual")
export type CompactionReason = typeof CompactionReason.Type

export const CompactionFailureReason = Schema.Literal("timeout", "cancelled", "error", "shutdown")
export type CompactionFailureReason = typeof CompactionFailureReason.Type

export class TurnStarted extends Schema.TaggedClass<TurnStarted>()("TurnStarted", {
  ...base,
  runId: Schema.String
}) {}

export class TurnFinished extends Schema.TaggedClass<TurnFinished>()("TurnFinished", {
  ...base,
  runId: Schema.String,
  outcome: TurnOutcome,
  timeout: Schema.optional(TimeoutKind),
  seq: Schema.Number
}) {}

export class UsageObserved extends Schema.TaggedClass<UsageObserved>()("UsageObserved", {
  ...base,
  runId: Schema.String,
  input: Schema.Number,
  output: Schema.Number,
  context: Schema.Number,
  asOfSeq: Schema.Number
}) {}

export class CompactionStarted extends Schema.TaggedClass<CompactionStarted>()("CompactionStarted", {
  ...base,
  compactionId: Schema.String,
  reason: CompactionReason,
  tokensBefore: Schema.Number
}) {}

export class CompactionCompleted extends Schema.TaggedClass<CompactionCompleted>()("CompactionCompleted", {
  ...base,
  compactionId: Schema.String,
  ordinal: Schema.Number,
  seq: Schema.Number,
  tokensBefore: Schema.Number,
  tokensAfter: Schema.Number
}) {}

export class CompactionFailed extends Schema.TaggedClass<CompactionFailed>()("CompactionFailed", {
  ...base,
  compactionId: Schema.String,
  reason: CompactionFailureReason,
  message: Schema.String
}) {}

export class SessionReset extends Schema.TaggedClass<SessionReset>()("SessionReset", {
  ...base,
  previousSessionId: Schema.String
}) {}

export class Resync extends Schema.TaggedClass<Resync>()("Resync", base) {}

/** Every lifecycle event, as a tagged union. */
export const LifecycleEvent = Schema.Union(
  TurnStarted,
  TurnFinished,
  UsageObserved,
  CompactionStarted,
  CompactionCompleted,
  CompactionFailed,
  SessionReset,
  Resync
)
export type LifecycleEvent = typeof LifecycleEvent.Type
