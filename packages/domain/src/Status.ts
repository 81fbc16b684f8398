/**
 * The read models served over HTTP and the facade: `SessionStatus`, `TurnResult`,
 * `CompactResult` (DESIGN §7). All times are epoch milliseconds.
 */
import { Schema } from "effect"
import { TimeoutKind } from "./LifecycleEvent.js"
import { TurnOutcome } from "./SessionEntry.js"

/** What went wrong, as `{_tag, message}`. */
export const ErrorInfo = Schema.Struct({ _tag: Schema.String, message: Schema.String })
export type ErrorInfo = typeof ErrorInfo.Type

export const SessionStatus = Schema.Struct({
  sessionKey: Schema.String,
  sessionId: Schema.String,
  generation: Schema.Number,
  compactionCount: Schema.Number,
  compaction: Schema.Struct({
    state: Schema.Literal("idle", "running"),
    compactionId: Schema.optional(Schema.String),
    startedAt: Schema.optional(Schema.Number)
  }),
  lastCompaction: Schema.optional(
    Schema.Struct({
      compactionId: Schema.String,
      ordinal: Schema.Number,
      at: Schema.Number,
      tokensBefore: Schema.optional(Schema.Number),
      tokensAfter: Schema.optional(Schema.Number)
    })
  ),
  tokens: Schema.Struct({
    context: Schema.NullOr(Schema.Number),
    window: Schema.NullOr(Schema.Number),
    input: Schema.NullOr(Schema.Number),
    output: Schema.NullOr(Schema.Number),
    fresh: Schema.Boolean,
    asOfSeq: Schema.Number
  }),
  lastRun: Schema.optional(
    Schema.Struct({
      runId: Schema.String,
      outcome: TurnOutcome,
      at: Schema.Number
    })
  ),
  updatedAt: Schema.Number
}).annotations({ identifier: "SessionStatus" })
export type SessionStatus = typeof SessionStatus.Type

export const TurnCompactionState = Schema.Literal("none", "completed", "pending", "failed")
export type TurnCompactionState = typeof TurnCompactionState.Type

export const TurnResult = Schema.Struct({
  runId: Schema.String,
  sessionKey: Schema.String,
  sessionId: Schema.String,
  outcome: TurnOutcome,
  timeout: Schema.optional(TimeoutKind),
  reply: Schema.optional(Schema.String),
  error: Schema.optional(ErrorInfo),
  compaction: Schema.Struct({
    state: TurnCompactionState,
    compactionId: Schema.optional(Schema.String)
  }),
  status: SessionStatus
}).annotations({ identifier: "TurnResult" })
export type TurnResult = typeof TurnResult.Type

export const CompactState = Schema.Literal("completed", "pending", "failed", "skipped")
export type CompactState = typeof CompactState.Type

export const CompactResult = Schema.Struct({
  state: CompactState,
  compactionId: Schema.optional(Schema.String),
  joined: Schema.Boolean,
  tokensBefore: Schema.optional(Schema.Number),
  tokensAfter: Schema.optional(Schema.Number),
  error: Schema.optional(ErrorInfo),
  status: SessionStatus
}).annotations({ identifier: "CompactResult" })
export type CompactResult = typeof CompactResult.Type

/** Body of `POST /v1/sessions/{key}/turns`. */
export const TurnRequest = Schema.Struct({
  message: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(100_000)),
  timeoutMs: Schema.optional(Schema.Int.pipe(Schema.between(1, 86_400_000)))
}).annotations({ identifier: "TurnRequest" })
export type TurnRequest = typeof TurnRequest.Type

/** Body of `POST /v1/sessions/{key}/compact`. */
export const CompactRequest = Schema.Struct({
  instructions: Schema.optional(Schema.String.pipe(Schema.maxLength(100_000))),
  waitMs: Schema.optional(Schema.Int.pipe(Schema.nonNegative()))
}).annotations({ identifier: "CompactRequest" })
export type CompactRequest = typeof CompactRequest.Type
