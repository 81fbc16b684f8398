/**
 * The cluster machinery of a gateway on a database: this process registers as a runner in
 * `cluster_runners` (`SqlRunnerStorage`), takes its shards as advisory locks, stores persisted
 * messages and replies in `cluster_messages` / `cluster_replies` (`SqlMessageStorage`), serves
 * the runner-to-runner socket on its runner address, and hosts the `Session` entity of every
 * key in its shards, run by its own `Runner`. Built only when `CONVERGE_DATABASE_URL` is set.
 */
import {
  Entity,
  type MessageStorage,
  RunnerHealth,
  Runners,
  RunnerAddress,
  type RunnerStorage,
  Sharding,
  ShardingConfig,
  SocketRunner,
  SqlMessageStorage,
  SqlRunnerStorage
} from "@effect/cluster"
import { NodeClusterSocket } from "@effect/platform-node"
import { RpcSerialization } from "@effect/rpc"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect, Layer, Option, Schedule } from "effect"
import { StorageError, StorageUnavailable } from "@converge/domain"
import { type LifecycleEvents, Runner } from "@converge/runner"
import { SessionStore } from "@converge/store"
import { Transcript } from "@converge/transcript"
import { SessionEntity } from "./SessionEntity.js"
import { watchRunningCompactions } from "./RunningCompactions.js"
import { layerAuthenticatedClientProtocol, layerAuthenticatedServer } from "./RunnerAuth.js"
import { SessionRouter, viaEntity } from "./SessionRouter.js"

/** The knobs of the cluster; the rest of `ShardingConfig` keeps its defaults. */
export interface ClusterOptions {
  /** Where the other runners reach this one (host:port). */
  readonly runnerAddress: { readonly host: string; readonly port: number }
  /** When set, runners authenticate to each other with it (`RunnerAuth`); every runner of a cluster has the same. */
  readonly token?: string | undefined
  /** How long a dead runner's shards stay locked (its takeover bound). */
  readonly shardLockMs: number
  /** How long an entity with no message is kept before its session's memory is dropped. */
  readonly entityIdleMs?: number | undefined
  /** How long a turn waits for the lease of the session's previous runner (see `EntityOptions`). */
  readonly leaseWaitMs?: number | undefined
  /** Processed messages older than this are deleted (the cluster never deletes them). */
  readonly pruneAfterMs?: number | undefined
}

/** `ShardingConfig` from the options: the lock is refreshed at a third of its expiry. */
export const shardingConfig = (options: ClusterOptions): Partial<ShardingConfig.ShardingConfig["Type"]> => ({
  runnerAddress: Option.some(RunnerAddress.make(options.runnerAddress.host, options.runnerAddress.port)),
  shardLockExpiration: Duration.millis(options.shardLockMs),
  shardLockRefreshInterval: Duration.millis(Math.max(100, Math.floor(options.shardLockMs / 3))),
  refreshAssignmentsInterval: Duration.millis(
    Math.max(100, Math.min(3000, Math.floor(options.shardLockMs / 3)))
  ),
  runnerHealthCheckInterval: Duration.millis(
    Math.max(200, Math.min(5000, Math.floor(options.shardLockMs / 5)))
  ),
  entityMaxIdleTime: Duration.millis(options.entityIdleMs ?? 5 * 60_000),
  entityMessagePollInterval: Duration.seconds(1),
  entityReplyPollInterval: Duration.millis(100),
  // Messages between runners are encoded even when both ends are this process.
  simulateRemoteSerialization: false
})

/** How the entity's handlers treat a session another gateway still holds. */
export interface EntityOptions {
  /**
   * How long a turn waits for the transcript lease of the session's previous runner (its shard
   * just moved here) before it answers `SessionLeased`: that runner gives the lease back when
   * its entity stops, or it lapses `leaseMs` after that runner died. 0: answer at once.
   */
  readonly leaseWaitMs?: number | undefined
  /**
   * When the entity stops (its shard moves), how long the session's running compaction may go
   * on to its commit before it is failed (`shutdown`, started again by the next turn that needs
   * it, on the new owner). The shard is handed over only after that (default 1 000 ms).
   */
  readonly compactionHandoffMs?: number | undefined
}

/**
 * The `Session` entity, run by the `Runner` in context. A key's messages run concurrently (the
 * runner's lane orders turns; a status does not wait behind a turn). When the entity stops —
 * its shard moved to another runner, or it was idle — the session is handed off: its running
 * compaction commits within `compactionHandoffMs` or fails, what the store merged is written,
 * this process forgets what it recovered of the session (rebuilt from the database if the
 * shard comes back), and the transcript lease is given back, so that the next owner does not wait for it. The cluster
 * releases the shard only after this, so two runners never work on one session at once.
 */
export const layerSessionEntity = (options: EntityOptions = {}) =>
  SessionEntity.toLayer(
    Effect.gen(function* () {
      const runner = yield* Runner
      const store = yield* SessionStore
      const transcript = yield* Transcript
      const sharding = yield* Sharding.Sharding
      const { entityId: key, shardId } = yield* Entity.CurrentAddress
      // Where a session runs is said once per move (operators, and tests that kill its owner).
      const said = Effect.annotateLogs({ sessionKey: key })
      yield* Effect.logInfo("session hosted on this runner").pipe(said)
      const handoffMs = options.compactionHandoffMs ?? 1_000
      // Stopped while the shard is still ours: only idle (a running compaction goes on here).
      // The in-memory test client has no shards: its entity stops as if its shard moved.
      const stillOurs = () => typeof sharding.hasShardId === "function" && sharding.hasShardId(shardId)
      yield* Effect.addFinalizer(() =>
        Effect.suspend(() =>
          stillOurs()
            ? Effect.void
            : runner.handOff(key, Duration.millis(handoffMs)).pipe(
                // What this runner merged is written now, not at its next flush: the next owner reads it.
                Effect.zipRight(store.flush),
                Effect.catchAll((e) =>
                  Effect.logWarning(`cannot write the session before handing it off: ${e.message}`)
                )
              )
        ).pipe(
          Effect.zipRight(store.get(key)),
          Effect.flatMap((entry) =>
            Option.isSome(entry) ? transcript.letGo(entry.value.sessionId) : Effect.void
          ),
          Effect.zipRight(Effect.logInfo("session no longer hosted on this runner").pipe(said))
        )
      )
      const leaseWaitMs = options.leaseWaitMs ?? 0
      const waitForLease = <A, E extends { readonly _tag: string }>(turn: Effect.Effect<A, E>) =>
        leaseWaitMs <= 0
          ? turn
          : Effect.retry(turn, {
              while: (e) => e._tag === "SessionLeased",
              schedule: Schedule.spaced(Duration.millis(LEASE_POLL_MS)).pipe(
                Schedule.upTo(Duration.millis(leaseWaitMs))
              )
            })
      return SessionEntity.of({
        turn: ({ payload }) =>
          waitForLease(
            runner.turn(key, payload.message, {
              idempotencyKey: payload.idempotencyKey,
              timeoutMs: payload.timeoutMs
            })
          ),
        compact: ({ payload }) => runner.compact(key, payload),
        cancelCompaction: () => runner.cancelCompaction(key),
        status: () => runner.status(key),
        reset: () => runner.reset(key)
      })
    }),
    { concurrency: "unbounded" }
  )

/** How often a turn waiting for a lease asks again. */
const LEASE_POLL_MS = 50

/**
 * The columns that hold entity ids and message ids are 255 characters in the cluster's own
 * migration; a session key may be 256 and a message id is `Session/<key>/turn/<idempotency key>`.
 */
const widenIds = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const narrow = yield* sql<{ column_name: string }>`
    SELECT column_name FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = 'cluster_messages'
      AND column_name IN ('message_id', 'entity_id') AND character_maximum_length < 1024`
  if (narrow.length === 0) return
  yield* sql.unsafe(
    `ALTER TABLE cluster_messages ${narrow.map((c) => `ALTER COLUMN ${c.column_name} TYPE varchar(1024)`).join(", ")}`
  )
})

/** A fixed advisory-lock number for "creating the cluster's tables" (ASCII "CLST"). */
const CLUSTER_SCHEMA_LOCK = 0x434c5354

/**
 * Builds `layer` while this gateway holds a session advisory lock, on a connection of its own.
 * The cluster's storage layers create their tables with `CREATE TABLE IF NOT EXISTS`, which
 * fails in one of two gateways that start at the same moment on a new database (the type's
 * row is inserted twice); one at a time, the second finds the tables made.
 */
const oneGatewayAtATime = <A, E, R>(
  layer: Layer.Layer<A, E, R>
): Layer.Layer<A, E | SqlError, R | SqlClient.SqlClient> =>
  Layer.scopedContext(
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const scope = yield* Effect.scope
      return yield* Effect.scoped(
        Effect.gen(function* () {
          const connection = yield* sql.reserve
          yield* Effect.acquireRelease(
            connection.executeRaw("SELECT pg_advisory_lock($1)", [CLUSTER_SCHEMA_LOCK]),
            () => Effect.ignore(connection.executeRaw("SELECT pg_advisory_unlock($1)", [CLUSTER_SCHEMA_LOCK]))
          )
          return yield* Layer.buildWithScope(layer, scope)
        })
      )
    })
  )

/** Deletes processed messages (and their replies) older than `afterMs`, every minute. */
const pruneProcessed = (afterMs: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const prune = sql`
      WITH old AS (
        DELETE FROM cluster_messages
        WHERE processed AND last_read IS NOT NULL AND last_read < NOW() - make_interval(secs => ${afterMs / 1000})
        RETURNING request_id
      )
      DELETE FROM cluster_replies WHERE request_id IN (SELECT request_id FROM old)`.pipe(
      Effect.catchAll((e) => Effect.logWarning(`cannot prune processed cluster messages: ${e.message}`))
    )
    yield* Effect.forkScoped(Effect.repeat(prune, Schedule.spaced(Duration.minutes(1))))
  })

/** The runner socket and the connections to the other runners: authenticated by `token` when there is one. */
const runnerSockets = (token: string | undefined) =>
  token === undefined
    ? Layer.merge(NodeClusterSocket.layerSocketServer, NodeClusterSocket.layerClientProtocol)
    : Layer.merge(
        layerAuthenticatedServer(token).pipe(Layer.provide(NodeClusterSocket.layerSocketServer)),
        layerAuthenticatedClientProtocol(token)
      )

/**
 * The cluster's tables on the database in context (`SqlMessageStorage`, `SqlRunnerStorage`),
 * made or migrated by one gateway at a time.
 */
export const layerStorage: Layer.Layer<
  MessageStorage.MessageStorage | RunnerStorage.RunnerStorage,
  SqlError,
  SqlClient.SqlClient | ShardingConfig.ShardingConfig
> = oneGatewayAtATime(
  Layer.merge(SqlMessageStorage.layer.pipe(Layer.tap(() => widenIds)), SqlRunnerStorage.layer)
)

/** Sharding on the database in context, with the runner socket served at `options.runnerAddress`. */
export const layerSharding = (
  options: ClusterOptions
): Layer.Layer<
  Sharding.Sharding | Runners.Runners | MessageStorage.MessageStorage,
  StorageError,
  SqlClient.SqlClient
> =>
  SocketRunner.layer.pipe(
    Layer.provide(RunnerHealth.layerPing.pipe(Layer.provide(Runners.layerRpc))),
    Layer.provide(runnerSockets(options.token)),
    Layer.provideMerge(Layer.orDie(layerStorage)),
    Layer.provide(ShardingConfig.layer(shardingConfig(options))),
    Layer.provide(RpcSerialization.layerMsgPack),
    Layer.catchAll((e) =>
      Layer.fail(
        new StorageError({
          path: `${options.runnerAddress.host}:${options.runnerAddress.port}`,
          message: `cannot serve the runner socket on ${options.runnerAddress.host}:${options.runnerAddress.port}: ${"message" in e ? e.message : String(e)}`
        })
      )
    )
  )

/** How often the router asks the database whether it answers. */
const PROBE_MS = 500

/**
 * The router of a gateway on a database. It probes the database (`SELECT 1`, every 500 ms, 3 s
 * at most): while it does not answer, a turn, `/compact` or reset answers `StorageUnavailable`
 * (503) at once, instead of waiting in the cluster, whose messages are stored first.
 */
const layerRouter = Layer.scoped(
  SessionRouter,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const client = yield* SessionEntity.client
    let away: string | undefined
    const probe = sql`SELECT 1`.pipe(
      Effect.timeoutFail({
        duration: Duration.seconds(3),
        onTimeout: () => new Error("no answer within 3 s")
      }),
      Effect.match({
        onFailure: (e) => {
          away = e.message
        },
        onSuccess: () => {
          away = undefined
        }
      })
    )
    yield* Effect.forkScoped(Effect.repeat(probe, Schedule.spaced(Duration.millis(PROBE_MS))))
    const storage = Effect.suspend(() =>
      away === undefined
        ? Effect.void
        : Effect.fail(
            new StorageUnavailable({
              message: `the database cannot be reached (${away}): nothing was sent; retry`,
              retryAfterMs: 1000
            })
          )
    )
    return viaEntity((key) => Effect.succeed(client(key)), { storage })
  })
)

/**
 * The cluster of a gateway: sharding, the `Session` entity on the `Runner` in context, the
 * prune job, and the `SessionRouter` that sends each request to its session's owner.
 */
export const layer = (
  options: ClusterOptions
): Layer.Layer<
  SessionRouter | Sharding.Sharding,
  StorageError,
  SqlClient.SqlClient | Runner | SessionStore | Transcript | LifecycleEvents
> =>
  Layer.mergeAll(
    layerRouter,
    layerSessionEntity({ leaseWaitMs: options.leaseWaitMs }),
    Layer.scopedDiscard(pruneProcessed(options.pruneAfterMs ?? 60 * 60_000)),
    // A dead runner's compaction is failed (shutdown) about when its shards move.
    Layer.scopedDiscard(
      watchRunningCompactions({
        staleMs: options.shardLockMs,
        runnerAddress: `${options.runnerAddress.host}:${options.runnerAddress.port}`
      })
    )
  ).pipe(Layer.provideMerge(layerSharding(options)))
