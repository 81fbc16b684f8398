/**
 * A session as an `@effect/cluster` entity: the entity id is the session key, and its RPCs are
 * the runner's operations with the domain schemas as payload, success and error. The cluster
 * routes each message to the runner that owns the key's shard; there the handlers call that
 * runner's `Runner`, so the lattice and the one commit path are the ones a single process uses.
 *
 * `turn` and `compact` are persisted (stored in `cluster_messages` before delivery, delivered
 * again to the next owner when a runner dies). A turn's primary key is its idempotency key, so
 * a send repeated with the same key, wherever it is made, gets the stored reply.
 */
import { ClusterSchema, Entity } from "@effect/cluster"
import { Rpc } from "@effect/rpc"
import { Schema } from "effect"
import {
  CompactResult,
  InvalidSessionKey,
  LaneFull,
  Overloaded,
  SessionLeased,
  SessionNotFound,
  SessionStatus,
  SessionUnavailable,
  ShuttingDown,
  StorageUnavailable,
  TurnResult
} from "@converge/domain"

/** What a turn answers instead of a `TurnResult` (the runner's `TurnError`). */
export const TurnError = Schema.Union(
  LaneFull,
  SessionLeased,
  SessionUnavailable,
  InvalidSessionKey,
  ShuttingDown,
  Overloaded,
  StorageUnavailable
)

/** The errors of the session operations other than `turn`. */
export const OperationError = Schema.Union(
  SessionNotFound,
  SessionUnavailable,
  ShuttingDown,
  StorageUnavailable
)

/** One turn; the idempotency key (the client's, or one made for it) is the message's primary key. */
export const Turn = Rpc.make("turn", {
  payload: {
    message: Schema.String,
    idempotencyKey: Schema.String,
    timeoutMs: Schema.optional(Schema.Number)
  },
  success: TurnResult,
  error: TurnError,
  primaryKey: (payload) => payload.idempotencyKey
}).annotate(ClusterSchema.Persisted, true)

/** A manual compaction (started or joined), waited for at most `waitMs`. */
export const Compact = Rpc.make("compact", {
  payload: {
    instructions: Schema.optional(Schema.String),
    waitMs: Schema.optional(Schema.Number)
  },
  success: CompactResult,
  error: OperationError
}).annotate(ClusterSchema.Persisted, true)

/** Cancels the running compaction before its commit. */
export const CancelCompaction = Rpc.make("cancelCompaction", {
  success: SessionStatus,
  error: OperationError
})

/** The session's status, as its owner sees it. */
export const Status = Rpc.make("status", { success: SessionStatus, error: OperationError })

/** A new generation of the session. */
export const Reset = Rpc.make("reset", { success: SessionStatus, error: OperationError })

/** The `Session` entity type. */
export const SessionEntity = Entity.make("Session", [Turn, Compact, CancelCompaction, Status, Reset])

/** The RPCs of the `Session` entity. */
export type SessionRpcs =
  | typeof Turn
  | typeof Compact
  | typeof CancelCompaction
  | typeof Status
  | typeof Reset
