/**
 * Builds a whole runner on the in-memory file system under TestClock, for scenario tests.
 */
import { type FileSystem, Path } from "@effect/platform"
import { Effect, Fiber, Layer, Option, Ref, type Scope, Stream, TestClock } from "effect"
import type { Config, LifecycleEvent } from "@converge/domain"
import { SessionStore } from "@converge/store"
import { LocalModel, MemoryFileSystem } from "@converge/testkit"
import { Transcript } from "@converge/transcript"
import type { LanguageModel } from "@effect/ai"
import { CompactionSupervisor } from "../src/CompactionSupervisor.js"
import { Compactor } from "../src/Compactor.js"
import { Lanes } from "../src/Lanes.js"
import { LifecycleEvents } from "../src/LifecycleEvents.js"
import { Reconciler } from "../src/Reconciler.js"
import { Runner } from "../src/Runner.js"
import { RunnerConfig } from "../src/RunnerConfig.js"
import { Status } from "../src/Status.js"

export const SESSIONS_DIR = "/state/sessions"

/** Small windows so a few messages cross the threshold; the bounds of SCENARIOS.md. */
export const scenarioConfig: Partial<Config> = {
  sessionsDir: SESSIONS_DIR,
  contextWindow: 4000,
  reserveTokens: 1000,
  keepRecentTokens: 600,
  turnTimeoutMs: 60_000,
  compactionWaitMs: 60_000,
  compactionTimeoutMs: 900_000,
  drainTimeoutMs: 10_000,
  flushIntervalMs: 50,
  localReplyMs: 0,
  localSummaryMs: 0
}

export interface HarnessOptions {
  readonly config?: Partial<Config>
  readonly files?: Readonly<Record<string, string>>
  /** A file system to share between runtimes (two processes, a restart). */
  readonly fileSystem?: Layer.Layer<FileSystem.FileSystem>
  /** Replaces parts of the runner (the naive variants of SCENARIOS.md). */
  readonly variant?: Variant
}

/** The parts a naive variant may replace. */
export interface Variant {
  readonly name: string
  /** Set when a part does real I/O (a database): closing the runtime then takes real time. */
  readonly realIo?: boolean
  readonly reconciler?: Layer.Layer<Reconciler, never, SessionStore | Transcript | RunnerConfig>
  readonly supervisor?: Layer.Layer<CompactionSupervisor, never, RunnerConfig | Compactor | LifecycleEvents>
  readonly runner?: (
    real: Layer.Layer<Runner, never, RunnerServices>
  ) => Layer.Layer<Runner, never, RunnerServices | SessionStore>
  readonly store?: (options: {
    sessionsDir: string
    flushIntervalMs: number
  }) => Layer.Layer<SessionStore, never, FileSystem.FileSystem | Path.Path>
  /** Another transcript backend (the scenario's files are its seed). */
  readonly transcript?: (options: {
    sessionsDir: string
  }) => Layer.Layer<Transcript, never, FileSystem.FileSystem | Path.Path>
}

type RunnerServices =
  | RunnerConfig
  | Lanes
  | Transcript
  | Reconciler
  | CompactionSupervisor
  | LifecycleEvents
  | Status
  | LanguageModel.LanguageModel

/** The services a scenario needs, over one in-memory file system. */
export const makeLayer = (options: HarnessOptions = {}) => {
  const config = { ...scenarioConfig, ...options.config }
  const fs = options.fileSystem ?? MemoryFileSystem.layerWith({ files: options.files ?? {} })
  const storeOptions = {
    sessionsDir: config.sessionsDir ?? SESSIONS_DIR,
    flushIntervalMs: config.flushIntervalMs ?? 50
  }
  const v = options.variant
  const base = Layer.mergeAll(
    v?.store ? v.store(storeOptions) : SessionStore.layerFile(storeOptions),
    v?.transcript
      ? v.transcript({ sessionsDir: config.sessionsDir ?? SESSIONS_DIR })
      : Transcript.layer({
          sessionsDir: config.sessionsDir ?? SESSIONS_DIR,
          leaseMs: 10_000,
          ...(config.cacheSessions !== undefined ? { cacheSessions: config.cacheSessions } : {}),
          ...(config.cacheMb !== undefined ? { cacheBytes: config.cacheMb * 1024 * 1024 } : {})
        }),
    LocalModel.layer({ replyMs: config.localReplyMs ?? 0, summaryMs: config.localSummaryMs ?? 0 })
  ).pipe(Layer.provideMerge(Layer.merge(fs, Path.layer)))
  const runner = (v?.runner ? v.runner(Runner.Default) : Runner.Default).pipe(
    Layer.provideMerge(Status.Default),
    Layer.provideMerge(v?.supervisor ?? CompactionSupervisor.Default),
    Layer.provideMerge(Compactor.Default),
    Layer.provideMerge(v?.reconciler ?? Reconciler.Default),
    Layer.provideMerge(Layer.merge(LifecycleEvents.Default, Lanes.Default))
  )
  return runner.pipe(Layer.provideMerge(base), Layer.provideMerge(RunnerConfig.layer(config)))
}

/** Collects every event published from now on. */
export const collectEvents = (): Effect.Effect<
  Effect.Effect<ReadonlyArray<LifecycleEvent>>,
  never,
  LifecycleEvents | Scope.Scope
> =>
  Effect.gen(function* () {
    const events = yield* LifecycleEvents
    const seen = yield* Ref.make<Array<LifecycleEvent>>([])
    const stream = yield* events.subscribe()
    yield* Stream.runForEach(stream, (e) => Ref.update(seen, (xs) => [...xs, e])).pipe(Effect.forkScoped)
    return Ref.get(seen)
  })

/** Lets forked fibers run up to their next sleep. */
export const settle = Effect.gen(function* () {
  for (;;) {
    for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
    if (realIo.inFlight === 0) return
    // A variant on a real database: its statements answer in real time.
    yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1)))
  }
})

/** Operations of a real-I/O variant now in flight (it counts them): `settle` waits for them too. */
export const realIo = { inFlight: 0 }

/** Counts `effect` as real I/O in flight while it runs. */
export const trackIo = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      realIo.inFlight++
    }),
    () => effect,
    () =>
      Effect.sync(() => {
        realIo.inFlight--
      })
  )

/** Moves virtual time forward after letting everything reach its sleep. */
export const advance = (ms: number) =>
  Effect.gen(function* () {
    yield* settle
    yield* TestClock.adjust(ms)
    yield* settle
  })

/** The result of a fiber that must have finished. */
export const done = <A, E>(fiber: Fiber.Fiber<A, E>) =>
  Effect.gen(function* () {
    const exit = yield* Fiber.poll(fiber)
    if (Option.isNone(exit)) return yield* Effect.dieMessage("the fiber is still running")
    return yield* exit.value
  })

/** A message of about `tokens` tokens (characters / 4). */
export const words = (tokens: number, tag = "m") =>
  `${tag}: ${"lorem ipsum ".repeat(Math.ceil((tokens * 4) / 12))}`.slice(0, tokens * 4)
