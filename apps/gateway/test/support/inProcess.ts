/**
 * Runs the gateway inside the test process (no build needed): on an embedded runtime over a
 * temporary directory, or on a stub `Runner` with the real `LifecycleEvents`.
 */
import { HttpServer } from "@effect/platform"
import { Cause, Context, Effect, Exit, Layer, Logger, Scope } from "effect"
import { type Config, makeConfig } from "@converge/domain"
import { LifecycleEvents, Runner, RunnerConfig } from "@converge/runner"
import { Telemetry } from "@converge/runtime"
import { EmbeddedRuntime, layer, layerEmbedded, Logging, Settings } from "../../src/index.js"
import { tempDir } from "./http.js"

/** A gateway running in this process. */
export interface InProcessGateway {
  readonly url: string
  readonly port: number
  readonly logs: Array<Record<string, unknown>>
  readonly context: Context.Context<never>
  /** Runs the gateway's shutdown (as on SIGTERM) and waits for it. */
  readonly close: () => Promise<void>
}

const running = new Set<InProcessGateway>()

/** Closes every in-process gateway still running. */
export const closeAll = async () => {
  await Promise.allSettled([...running].map((g) => g.close()))
}

type ConfigOptions = Partial<Record<keyof Config, unknown>>

const build = async <E>(
  gatewayLayer: Layer.Layer<never, E, never> | Layer.Layer<HttpServer.HttpServer, E, never>,
  logs: Array<Record<string, unknown>>
): Promise<InProcessGateway> => {
  const scope = Effect.runSync(Scope.make())
  const logger = Logger.replace(
    Logger.defaultLogger,
    Logging.jsonLogger((line) => logs.push(JSON.parse(line) as Record<string, unknown>))
  )
  const exit = await Effect.runPromiseExit(
    Layer.buildWithScope(Layer.provide(gatewayLayer as Layer.Layer<HttpServer.HttpServer, E>, logger), scope)
  )
  if (Exit.isFailure(exit)) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw Cause.squash(exit.cause)
  }
  const context = exit.value as Context.Context<never>
  const address = Context.get(exit.value, HttpServer.HttpServer).address
  const port = address._tag === "TcpAddress" ? address.port : 0
  const gateway: InProcessGateway = {
    url: `http://127.0.0.1:${port}`,
    port,
    logs,
    context,
    close: async () => {
      running.delete(gateway)
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }
  running.add(gateway)
  return gateway
}

/** The whole gateway with its embedded runtime on a fresh temporary directory (unless given). */
export const startEmbedded = async (
  options: {
    readonly config?: ConfigOptions
    readonly env?: Record<string, string | undefined>
    readonly keepAliveMs?: number
  } = {}
) => {
  const config = await Effect.runPromise(
    makeConfig({
      port: 0,
      sessionsDir: await tempDir(),
      localReplyMs: 5,
      localSummaryMs: 5,
      flushIntervalMs: 10,
      ...options.config
    })
  )
  const settings = await Effect.runPromise(
    Settings.make(config, options.keepAliveMs === undefined ? {} : { keepAliveMs: options.keepAliveMs })
  )
  const logs: Array<Record<string, unknown>> = []
  return { gateway: await build(layerEmbedded(settings, options.env ?? {}), logs), config }
}

/** The gateway on `runner` (methods not given die) and the real `LifecycleEvents`. */
export const startStubbed = async (
  options: {
    readonly runner?: Partial<Runner>
    readonly config?: ConfigOptions
    readonly keepAliveMs?: number
    readonly closeRuntime?: Effect.Effect<void>
  } = {}
) => {
  const config = await Effect.runPromise(makeConfig({ port: 0, ...options.config }))
  const settings = await Effect.runPromise(
    Settings.make(config, options.keepAliveMs === undefined ? {} : { keepAliveMs: options.keepAliveMs })
  )
  const unimplemented = (name: string) => () => Effect.die(`stub Runner: ${name} is not implemented`)
  const runner = Runner.make({
    turn: unimplemented("turn"),
    compact: unimplemented("compact"),
    cancelCompaction: unimplemented("cancelCompaction"),
    reset: unimplemented("reset"),
    handOff: unimplemented("handOff"),
    status: unimplemented("status"),
    sessions: Effect.succeed([]),
    beginShutdown: Effect.void,
    running: Effect.succeed(0),
    idempotencyKeys: Effect.succeed(0),
    admission: Effect.succeed({
      inFlight: 0,
      capacity: undefined,
      limit: 1,
      externalMs: 0,
      admitted: 0,
      refused: 0
    }),
    ...options.runner
  })
  const events = LifecycleEvents.Default.pipe(Layer.provide(RunnerConfig.layer(config)))
  const gatewayLayer = layer(settings).pipe(
    Layer.provide(Layer.succeed(Runner, runner)),
    Layer.provideMerge(events),
    Layer.provide(
      Layer.succeed(EmbeddedRuntime.RuntimeHandle, { close: options.closeRuntime ?? Effect.void })
    ),
    Layer.provide(Telemetry.layer({}))
  )
  const logs: Array<Record<string, unknown>> = []
  const gateway = await build(gatewayLayer, logs)
  return {
    gateway,
    events: Context.get(gateway.context as Context.Context<LifecycleEvents>, LifecycleEvents)
  }
}

/** The gateway as `main.ts` builds it, from an environment (`CONVERGE_*` and provider variables). */
export const startFromEnv = async (env: Record<string, string | undefined>) => {
  const settings = await Effect.runPromise(Settings.fromEnv(env))
  const logs: Array<Record<string, unknown>> = []
  return build(layerEmbedded(settings, env), logs)
}
