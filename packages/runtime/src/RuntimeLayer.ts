/**
 * The whole runtime as one layer: store, transcript, runner, events and model, from a
 * `Config`, on the real file system.
 */
import { FileSystem, type Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { type Config, StorageError } from "@converge/domain"
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
    layerPgIdempotency({ url })
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
  if (config.databaseUrl === undefined) return runtimeOver(fileState(config), config, env)
  const database = Database.layer({ url: config.databaseUrl })
  const runtime = runtimeOver(databaseState(config, database), config, env)
  return Layer.provideMerge(layerPgEvents({ url: config.databaseUrl }).pipe(Layer.provide(database)), runtime)
}

/** Creates the sessions directory when it is missing (a file in its way is an error naming it). */
const ensureDirectory = (dir: string): Effect.Effect<void, StorageError, FileSystem.FileSystem> =>
  FileSystem.FileSystem.pipe(
    Effect.flatMap((fs) => fs.makeDirectory(dir, { recursive: true })),
    Effect.mapError(
      (e) =>
        new StorageError({ path: dir, message: `cannot create the sessions directory ${dir}: ${e.message}` })
    )
  )
