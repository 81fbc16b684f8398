/**
 * Where a request for a session is run. In one process (`layerLocal`) that is the runtime's own
 * `Runner`. On a database (`viaEntity`, built by `Cluster.layer`) it is the `Session` entity of
 * the key: the cluster sends the message to the runner that owns the key's shard, which may be
 * this process or another gateway, and the answer comes back the same either way.
 */
import type { ClusterError } from "@effect/cluster"
import type { RpcClient } from "@effect/rpc"
import { randomUUID } from "node:crypto"
import { Context, Effect, Layer } from "effect"
import {
  type CompactResult,
  InvalidSessionKey,
  isSessionKey,
  SessionNotFound,
  type SessionStatus,
  type SessionUnavailable,
  type ShuttingDown,
  StorageUnavailable,
  type TurnResult
} from "@converge/domain"
import { type CompactOptions, Runner, type TurnError, type TurnOptions } from "@converge/runner"
import type { SessionRpcs } from "./SessionEntity.js"

/** The errors of the session operations other than `turn`. */
export type SessionError = SessionNotFound | SessionUnavailable | ShuttingDown | StorageUnavailable

/** The session operations of the HTTP API, wherever the session runs. */
export interface SessionRouterService {
  readonly turn: (key: string, message: string, options?: TurnOptions) => Effect.Effect<TurnResult, TurnError>
  readonly compact: (key: string, options?: CompactOptions) => Effect.Effect<CompactResult, SessionError>
  readonly cancelCompaction: (key: string) => Effect.Effect<SessionStatus, SessionError>
  readonly status: (key: string) => Effect.Effect<SessionStatus, SessionError>
  readonly reset: (key: string) => Effect.Effect<SessionStatus, SessionError>
}

/** How long a caller is told to wait when the cluster cannot take a message now. */
const RETRY_AFTER_MS = 1000

/**
 * A message the cluster could not take (its storage failed, the entity's mailbox is full, or
 * the same message is being processed): the request can be sent again.
 */
const notDelivered = (error: { readonly _tag: string; readonly message?: string }) =>
  new StorageUnavailable({
    message: `the session's message could not be delivered (${error._tag}${error.message ? `: ${error.message}` : ""}); send it again`,
    retryAfterMs: RETRY_AFTER_MS
  })

/** A turn for a key that cannot be one is refused before it is sent, as the runner refuses it. */
const invalidKey = (key: string) =>
  new InvalidSessionKey({
    sessionKey: key,
    message: `invalid session key ${JSON.stringify(key.slice(0, 64))}: 1–256 characters of A-Z a-z 0-9 : _ . @ + -`
  })

/** The session operations: the local runner, or the session's entity in the cluster. */
export class SessionRouter extends Context.Tag("converge/SessionRouter")<
  SessionRouter,
  SessionRouterService
>() {
  /** Every session runs on `runner`. */
  static readonly local = (runner: Runner): SessionRouterService => ({
    turn: runner.turn,
    compact: runner.compact,
    cancelCompaction: runner.cancelCompaction,
    status: runner.status,
    reset: runner.reset
  })

  /** Every session runs on this process's `Runner`. */
  static readonly layerLocal: Layer.Layer<SessionRouter, never, Runner> = Layer.effect(
    SessionRouter,
    Effect.map(Runner, SessionRouter.local)
  )
}

/** The client of one session's entity (from the cluster, or from a test client). */
export type EntityClient = RpcClient.RpcClient.From<SessionRpcs, DeliveryError>

/** What the cluster answers when it could not take a message. */
type DeliveryError =
  | ClusterError.MailboxFull
  | ClusterError.AlreadyProcessingMessage
  | ClusterError.PersistenceError

const isDeliveryError = (e: { readonly _tag: string }): e is DeliveryError =>
  e._tag === "MailboxFull" || e._tag === "AlreadyProcessingMessage" || e._tag === "PersistenceError"

const delivered = <A, E extends { readonly _tag: string }>(
  effect: Effect.Effect<A, E>
): Effect.Effect<A, Exclude<E, DeliveryError> | StorageUnavailable> =>
  Effect.catchIf(effect, isDeliveryError, (e) => Effect.fail(notDelivered(e))) as Effect.Effect<
    A,
    Exclude<E, DeliveryError> | StorageUnavailable
  >

/** Options of `viaEntity`. */
export interface ViaEntityOptions {
  /**
   * Checked before a message that must be stored first (turn, compact, reset) is sent: a
   * database known to be away answers `StorageUnavailable` at once, instead of the message
   * waiting in the cluster until the database is back.
   */
  readonly storage?: Effect.Effect<void, StorageUnavailable> | undefined
}

/** The session operations as messages to the entity of each key, through `clientOf`. */
export const viaEntity = (
  clientOf: (key: string) => Effect.Effect<EntityClient>,
  options: ViaEntityOptions = {}
): SessionRouterService => {
  const storage = options.storage ?? Effect.void
  // No session is stored under a key that cannot be one (as the runner answers).
  const to = <A, E extends { readonly _tag: string }>(
    key: string,
    send: (client: EntityClient) => Effect.Effect<A, E>
  ) =>
    isSessionKey(key) ? delivered(Effect.flatMap(clientOf(key), send)) : Effect.fail(SessionNotFound.of(key))
  return {
    turn: (key, message, options = {}) =>
      !isSessionKey(key)
        ? Effect.fail(invalidKey(key))
        : delivered(
            Effect.flatMap(Effect.zipRight(storage, clientOf(key)), (client) =>
              client.turn({
                message,
                idempotencyKey: options.idempotencyKey ?? `converge:${randomUUID()}`,
                ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {})
              })
            )
          ),
    compact: (key, options = {}) =>
      to(key, (client) =>
        Effect.zipRight(
          storage,
          client.compact({
            ...(options.instructions !== undefined ? { instructions: options.instructions } : {}),
            ...(options.waitMs !== undefined ? { waitMs: options.waitMs } : {})
          })
        )
      ),
    cancelCompaction: (key) => to(key, (client) => client.cancelCompaction()),
    status: (key) => to(key, (client) => client.status()),
    reset: (key) => to(key, (client) => Effect.zipRight(storage, client.reset()))
  }
}
