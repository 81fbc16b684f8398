/**
 * The whole runtime as one layer: store, transcript, runner, events and model, from a
 * `Config`, on the real file system.
 */
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { type Config, StorageError } from "@converge/domain"
import { IdempotencyRecord, layerWithRecovery, RunnerConfig } from "@converge/runner"
import { Database, layerPgIdempotency, layerPgStore } from "@converge/postgres"
import { SessionStore } from "@converge/store"
import { Transcript } from "@converge/transcript"
import { modelLayer } from "./ModelLayer.js"

/**
 * The session store and the idempotency record of `config`: OpenClaw's `sessions.json` and
 * the runner's memory by default; with `CONVERGE_DATABASE_URL`, rows of PostgreSQL (one
 * merge statement each) and keys shared by every gateway on the database, over one pool
 * (connected and migrated first; a database that cannot be reached fails start-up naming the
 * masked URL).
 */
export const storeLayer = (config: Config) =>
  config.databaseUrl === undefined
    ? Layer.merge(
        SessionStore.layerFile({ sessionsDir: config.sessionsDir, flushIntervalMs: config.flushIntervalMs }),
        IdempotencyRecord.layerInProcess
      )
    : Layer.merge(
        layerPgStore({ url: config.databaseUrl, flushIntervalMs: config.flushIntervalMs }),
        layerPgIdempotency({ url: config.databaseUrl })
      ).pipe(Layer.provide(Database.layer({ url: config.databaseUrl })))

/** Store, transcript and model of `config`, over the file system in context. */
export const servicesLayer = (config: Config, env: Record<string, string | undefined> = process.env) =>
  Layer.mergeAll(
    storeLayer(config),
    Transcript.layer({
      sessionsDir: config.sessionsDir,
      leaseMs: config.leaseMs,
      cacheSessions: config.cacheSessions,
      cacheBytes: config.cacheMb * 1024 * 1024
    }),
    modelLayer(config, env)
  )

/** The runtime of `config` on the Node file system; start-up recovery runs in the background. */
export const layer = (config: Config, env: Record<string, string | undefined> = process.env) =>
  layerWithRecovery.pipe(
    Layer.provideMerge(servicesLayer(config, env)),
    Layer.provideMerge(RunnerConfig.layer(config)),
    Layer.provideMerge(Layer.effectDiscard(ensureDirectory(config.sessionsDir))),
    Layer.provideMerge(NodeContext.layer)
  )

/** Creates the sessions directory when it is missing (a file in its way is an error naming it). */
const ensureDirectory = (dir: string): Effect.Effect<void, StorageError, FileSystem.FileSystem> =>
  FileSystem.FileSystem.pipe(
    Effect.flatMap((fs) => fs.makeDirectory(dir, { recursive: true })),
    Effect.mapError(
      (e) =>
        new StorageError({ path: dir, message: `cannot create the sessions directory ${dir}: ${e.message}` })
    )
  )
