/**
 * The Promise facade, for hosts that are not written in Effect: one `ManagedRuntime`
 * holding store, transcript, runner and model, with plain async methods.
 */
import { Cause, Effect, Exit, Fiber, Layer, ManagedRuntime, Scope, Stream } from "effect"
import {
  type CompactResult,
  type Config,
  type LifecycleEvent,
  makeConfig,
  type SessionStatus,
  type TurnResult
} from "@converge/domain"
import { SessionRouter } from "@converge/cluster"
import { LifecycleEvents, Runner } from "@converge/runner"
import { layer } from "./RuntimeLayer.js"
import { layerSliced } from "./Scheduling.js"
import * as Telemetry from "./Telemetry.js"

/** An error from the runtime: `name` is its tag (`SessionNotFound`, `LaneFull`, …). */
export class ConvergeError extends Error {
  readonly _tag: string
  /** For `Overloaded`: when a retry may be admitted, in ms. */
  readonly retryAfterMs: number | undefined
  constructor(tag: string, message: string, options?: { readonly cause?: unknown }) {
    super(message, options)
    this._tag = tag
    this.name = tag
    const retry = (options?.cause as { readonly retryAfterMs?: unknown } | undefined)?.retryAfterMs
    this.retryAfterMs = typeof retry === "number" ? retry : undefined
  }
}

/** Options of `createRuntime`: any setting of `Config`, plus where provider keys come from. */
export type RuntimeOptions = Partial<Config> & {
  /** Provider variables (`OPENAI_API_KEY`, …); `process.env` when absent. */
  readonly env?: Record<string, string | undefined>
}

/** What `createRuntime` returns. */
export interface ConvergeRuntime {
  /** Runs a turn; resolves with its `TurnResult` (timed out and failed turns included). */
  turn(
    sessionKey: string,
    message: string,
    options?: { readonly timeoutMs?: number; readonly idempotencyKey?: string }
  ): Promise<TurnResult>
  /** Starts or joins a compaction and waits for it at most `waitMs`. */
  compact(
    sessionKey: string,
    options?: { readonly instructions?: string; readonly waitMs?: number }
  ): Promise<CompactResult>
  /** Cancels the running compaction, before its commit. */
  cancelCompaction(sessionKey: string): Promise<SessionStatus>
  /** The status of a session, or `undefined` when there is none. */
  status(sessionKey: string): Promise<SessionStatus | undefined>
  /** The status of every session. */
  sessions(): Promise<Array<SessionStatus>>
  /** Starts a new generation of the session. */
  reset(sessionKey: string): Promise<SessionStatus>
  /** Calls `listener` with each lifecycle event from now on; returns the unsubscribe function. */
  subscribe(listener: (event: LifecycleEvent) => void, options?: { readonly sessionKey?: string }): () => void
  /** Drains running work within `drainTimeoutMs`, flushes the store, and releases everything. */
  dispose(): Promise<void>
  /** The decoded configuration. */
  readonly config: Config
  /** The underlying runtime, for hosts that do use Effect. */
  readonly runtime: ManagedRuntime.ManagedRuntime<Runner | LifecycleEvents, unknown>
}

const toError = (cause: Cause.Cause<unknown>): Error => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") {
    const e = failure.value as { _tag?: unknown; message?: unknown }
    const tag = typeof e._tag === "string" ? e._tag : "Error"
    const message = typeof e.message === "string" && e.message.length > 0 ? e.message : String(failure.value)
    return new ConvergeError(tag, message, { cause: failure.value })
  }
  if (Cause.isInterruptedOnly(cause)) return new ConvergeError("Interrupted", "the runtime was disposed")
  return new ConvergeError("Defect", Cause.pretty(cause))
}

/** Builds a runtime and waits until it is ready (store read, start-up recovery started). */
export const createRuntime = async (options: RuntimeOptions = {}): Promise<ConvergeRuntime> => {
  const { env, ...settings } = options
  // No HTTP port here: on a database, the runner socket takes a free port unless one is given.
  const configExit = Effect.runSyncExit(makeConfig({ port: 0, ...settings }))
  if (Exit.isFailure(configExit)) throw toError(configExit.cause)
  const config = configExit.value
  const vars = env ?? process.env
  // Traces by OTLP when the `OTEL_*` variables ask for them, as in the gateway; its fibers on the
  // sliced scheduler, as the gateway's (the event loop keeps turning under load).
  const runtime = ManagedRuntime.make(
    layer(config, vars).pipe(
      Layer.provide(Telemetry.tracingLayer(Telemetry.settingsFromEnv(vars))),
      Layer.provide(layerSliced())
    )
  )
  let disposed = false
  const disposedError = () => new ConvergeError("Disposed", "the runtime was disposed; create a new one")
  const run = async <A>(
    effect: Effect.Effect<A, unknown, Runner | LifecycleEvents | SessionRouter>
  ): Promise<A> => {
    if (disposed) throw disposedError()
    const exit = await runtime.runPromiseExit(effect)
    if (Exit.isFailure(exit)) throw toError(exit.cause)
    return exit.value
  }
  // Build now, so a bad directory or model fails createRuntime itself.
  await run(Effect.void)
  const subscriptions = new Set<() => void>()

  return {
    config,
    runtime,
    // Session operations go where the session runs (this runtime, or its owner on a database).
    turn: (sessionKey, message, o = {}) =>
      run(Effect.flatMap(SessionRouter, (r) => r.turn(sessionKey, message, o))),
    compact: (sessionKey, o = {}) => run(Effect.flatMap(SessionRouter, (r) => r.compact(sessionKey, o))),
    cancelCompaction: (sessionKey) =>
      run(Effect.flatMap(SessionRouter, (r) => r.cancelCompaction(sessionKey))),
    status: (sessionKey) =>
      run(
        Effect.flatMap(SessionRouter, (r) => r.status(sessionKey)).pipe(
          Effect.catchTag("SessionNotFound", () => Effect.succeed(undefined))
        )
      ),
    sessions: () => run(Effect.flatMap(Runner, (r) => r.sessions)),
    reset: (sessionKey) => run(Effect.flatMap(SessionRouter, (r) => r.reset(sessionKey))),
    subscribe: (listener, o = {}) => {
      if (disposed) throw disposedError()
      // Subscribed before this returns: no event published afterwards is missed.
      const scope = runtime.runSync(Scope.make())
      const stream = runtime.runSync(
        Effect.flatMap(LifecycleEvents, (events) => events.subscribe(o)).pipe(Scope.extend(scope))
      )
      const fiber = runtime.runFork(
        Stream.runForEach(stream, (event) =>
          Effect.sync(() => {
            try {
              listener(event)
            } catch {
              // A listener's own error must not stop the runtime's stream.
            }
          })
        )
      )
      const stop = () => {
        if (!subscriptions.delete(stop)) return
        runtime.runFork(Fiber.interrupt(fiber).pipe(Effect.zipRight(Scope.close(scope, Exit.void))))
      }
      subscriptions.add(stop)
      return stop
    },
    dispose: async () => {
      if (disposed) return
      disposed = true
      for (const stop of [...subscriptions]) stop()
      await runtime.dispose()
    }
  }
}
