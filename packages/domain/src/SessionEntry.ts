/**
 * One value of `sessions.json`: OpenClaw's fields, Converge's owned fields beside them,
 * and every field neither knows, kept as it was read.
 */
import { Schema } from "effect"

/** The last compaction Converge counted for this session (highest ordinal wins). */
export const LastCompaction = Schema.Struct(
  {
    compactionId: Schema.String,
    ordinal: Schema.Number,
    at: Schema.Number,
    seq: Schema.optional(Schema.Number),
    tokensBefore: Schema.optional(Schema.Number),
    tokensAfter: Schema.optional(Schema.Number)
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)
export type LastCompaction = typeof LastCompaction.Type

/** Outcome of a turn. */
export const TurnOutcome = Schema.Literal("completed", "timed_out", "failed")
export type TurnOutcome = typeof TurnOutcome.Type

/** The last turn Converge finished for this session (highest `seq` wins). */
export const LastRun = Schema.Struct(
  {
    runId: Schema.String,
    outcome: TurnOutcome,
    at: Schema.Number,
    seq: Schema.Number
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)
export type LastRun = typeof LastRun.Type

/** The OpenClaw fields Converge reads and writes, with OpenClaw's names. */
export const OpenClawFields = {
  sessionId: Schema.String,
  updatedAt: Schema.optional(Schema.Number),
  compactionCount: Schema.optional(Schema.Number),
  inputTokens: Schema.optional(Schema.NullOr(Schema.Number)),
  outputTokens: Schema.optional(Schema.NullOr(Schema.Number)),
  totalTokens: Schema.optional(Schema.NullOr(Schema.Number)),
  totalTokensFresh: Schema.optional(Schema.Boolean),
  contextTokens: Schema.optional(Schema.NullOr(Schema.Number)),
  model: Schema.optional(Schema.String)
}

/** Converge's owned fields (DESIGN §2.4), merged as a join-semilattice. */
export const ConvergeFields = {
  generation: Schema.optional(Schema.Number),
  sessionStartedAt: Schema.optional(Schema.Number),
  ownedFor: Schema.optional(Schema.String),
  compactionBase: Schema.optional(Schema.Number),
  tokensAsOfSeq: Schema.optional(Schema.Number),
  lastCompaction: Schema.optional(LastCompaction),
  lastRun: Schema.optional(LastRun)
}

/** A `sessions.json` entry; unknown fields survive decode → encode unchanged. */
export const SessionEntry = Schema.Struct(
  { ...OpenClawFields, ...ConvergeFields },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)
export type SessionEntry = typeof SessionEntry.Type

/** The whole `sessions.json`: session key → entry. */
export const SessionsFile = Schema.Record({ key: Schema.String, value: SessionEntry })
export type SessionsFile = typeof SessionsFile.Type

/** The names of the fields Converge owns in an entry (the lattice). */
export const OWNED_FIELDS = [
  "sessionId",
  "generation",
  "sessionStartedAt",
  "ownedFor",
  "compactionCount",
  "compactionBase",
  "inputTokens",
  "outputTokens",
  "totalTokens",
  "totalTokensFresh",
  "tokensAsOfSeq",
  "lastCompaction",
  "lastRun",
  "updatedAt"
] as const
export type OwnedField = (typeof OWNED_FIELDS)[number]
