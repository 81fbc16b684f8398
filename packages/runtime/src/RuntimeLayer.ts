/**
 * The whole runtime as one layer: store, transcript, runner, events and model, from a
 * `Config`, on the real file system.
 */
import { FileSystem, type Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { createServer } from "node:net"
import { Cluster, SessionRouter } from "@converge/cluster"
import {
  type Config,
  ConfigError,
  envVariables,
  isLoopbackHost,
  parseHostPort,
  StorageError
} from "@converge/domain"
import { IdempotencyRecord, layerWithRecovery, RunnerConfig } from "@converge/runner"
import {
  Database,
  layerPgEvents,
  layerPgIdempotency,
  layerPgStore,
  layerPgTranscript
} from "@converge/postgres"
import { SessionStore } from "@converge/store"
import { Transcript } from "@converge/transcript"
import { modelLayer } from "./ModelLayer.js"

/**
 * Where the state of `config` lives — the session store, the transcripts and the idempotency
 * record: by default OpenClaw's `sessions.json` and `<sessionId>.jsonl` files in the sessions
 * directory, and the runner's memory; with `CONVERGE_DATABASE_URL`, PostgreSQL (one merge
 * statement per store row, transcript rows appended under a lease, keys shared by every
 * gateway on the database), over one pool, connected and migrated first: a database that
 * cannot be reached fails start-up naming the masked URL.
 */
export const stateLayer = (config: Config): StateLayer =>
  config.databaseUrl === undefined
    ? fileState(config)
    : databaseState(config, Database.layer({ url: config.databaseUrl }))

/** What the runner needs of the state, and what it needs itself. */
type StateLayer = Layer.Layer<
  SessionStore | Transcript | IdempotencyRecord,
  StorageError,
  FileSystem.FileSystem | Path.Path
>

const fileState = (config: Config): StateLayer =>
  Layer.mergeAll(
    SessionStore.layerFile({ sessionsDir: config.sessionsDir, flushIntervalMs: config.flushIntervalMs }),
    Transcript.layer({
      sessionsDir: config.sessionsDir,
      leaseMs: config.leaseMs,
      cacheSessions: config.cacheSessions,
      cacheBytes: config.cacheMb * 1024 * 1024
    }),
    IdempotencyRecord.layerInProcess
  )

const databaseState = (config: Config, database: Layer.Layer<Database.Client, StorageError>): StateLayer => {
  const url = config.databaseUrl ?? ""
  return Layer.mergeAll(
    layerPgStore({ url, flushIntervalMs: config.flushIntervalMs }),
    layerPgTranscript({
      url,
      leaseMs: config.leaseMs,
      cacheSessions: config.cacheSessions,
      cacheBytes: config.cacheMb * 1024 * 1024
    }),
    // A claim is held like a lease: renewed while its turn runs, lapsed soon after its holder died.
    layerPgIdempotency({ url, liveHoldMs: config.leaseMs })
  ).pipe(Layer.provide(database))
}

/** The runner over `state`, with the model of `config`, on the Node file system. */
const runtimeOver = (state: StateLayer, config: Config, env: Record<string, string | undefined>) =>
  layerWithRecovery.pipe(
    Layer.provideMerge(Layer.mergeAll(state, modelLayer(config, env))),
    Layer.provideMerge(RunnerConfig.layer(config)),
    Layer.provideMerge(Layer.effectDiscard(ensureDirectory(config.sessionsDir))),
    Layer.provideMerge(NodeContext.layer)
  )

/** State and model of `config`, over the file system in context. */
export const servicesLayer = (config: Config, env: Record<string, string | undefined> = process.env) =>
  Layer.mergeAll(stateLayer(config), modelLayer(config, env))

/**
 * The runtime of `config` on the Node file system; start-up recovery runs in the background.
 * On a database, lifecycle events are relayed to and from the other gateways on it (one pool:
 * the database layer is one value, built once).
 */
export const layer = (config: Config, env: Record<string, string | undefined> = process.env) => {
  if (config.databaseUrl === undefined)
    return Layer.provideMerge(SessionRouter.layerLocal, runtimeOver(fileState(config), config, env))
  const database = Database.layer({ url: config.databaseUrl })
  const runtime = runtimeOver(databaseState(config, database), config, env)
  const cluster = Layer.unwrapEffect(
    Effect.map(clusterOptions(config), (options) => Cluster.layer(options).pipe(Layer.provide(database)))
  )
  return Layer.provideMerge(
    cluster,
    Layer.provideMerge(layerPgEvents({ url: config.databaseUrl }).pipe(Layer.provide(database)), runtime)
  )
}

/**
 * Where this gateway's runner is reached: `CONVERGE_RUNNER_ADDRESS`, else the HTTP host on the
 * HTTP port + 10000 (a free port when that is past 65535 or the HTTP port is 0). Off loopback it
 * needs `CONVERGE_TOKEN`; with a token, runners authenticate to each other with it.
 */
export const clusterOptions = (config: Config): Effect.Effect<Cluster.ClusterOptions, ConfigError> =>
  Effect.gen(function* () {
    const given = config.runnerAddress === undefined ? undefined : parseHostPort(config.runnerAddress)
    const host = given?.host ?? (isLoopbackHost(config.host) ? config.host : "127.0.0.1")
    if (!isLoopbackHost(host) && config.token === undefined) {
      return yield* new ConfigError({
        variable: envVariables.token,
        value: "",
        message:
          `${envVariables.runnerAddress}=${JSON.stringify(config.runnerAddress)} is not a loopback address: ` +
          `the runner refuses to start without ${envVariables.token}`
      })
    }
    const port =
      given?.port ??
      (config.port === 0 || config.port + RUNNER_PORT_OFFSET > 65_535
        ? yield* freePort(host)
        : config.port + RUNNER_PORT_OFFSET)
    return {
      runnerAddress: { host, port },
      shardLockMs: config.shardLockMs,
      token: config.token,
      // A dead runner's lease lapses after leaseMs; a live one gives it back when its entity stops.
      leaseWaitMs: config.leaseMs + 1000
    }
  })

/** The runner port's distance from the HTTP port, by default. */
export const RUNNER_PORT_OFFSET = 10_000

/** A port no one listens on now, on `host`. */
const freePort = (host: string) =>
  Effect.async<number>((resume) => {
    const server = createServer()
    server.once("error", (e) => resume(Effect.die(e)))
    server.listen(0, host, () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resume(Effect.succeed(port)))
    })
  })

/** Creates the sessions directory when it is missing (a file in its way is an error naming it). */
const ensureDirectory = (dir: string): Effect.Effect<void, StorageError, FileSystem.FileSystem> =>
  FileSystem.FileSystem.pipe(
    Effect.flatMap((fs) => fs.makeDirectory(dir, { recursive: true })),
    Effect.mapError(
      (e) =>
        new StorageError({ path: dir, message: `cannot create the sessions directory ${dir}: ${e.message}` })
    )
  )
