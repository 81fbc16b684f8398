/**
 * Composes the gateway: the API and its handlers, the guard, the OpenAPI document and docs
 * page, the Node HTTP server, the embedded runtime, and the order in which they stop.
 */
import { createServer, type Server } from "node:http"
import {
  HttpApiBuilder,
  HttpApp,
  HttpApiSwagger,
  HttpMiddleware,
  HttpRouter,
  HttpServer,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Clock, Context, Effect, Exit, Layer, Schema, Stream } from "effect"
import { ConfigError, LifecycleEvent } from "@converge/domain"
import { LifecycleEvents, Runner } from "@converge/runner"
import { Telemetry } from "@converge/runtime"
import { GatewayApi } from "./Api.js"
import * as EmbeddedRuntime from "./EmbeddedRuntime.js"
import { EventsLive } from "./Events/Http.js"
import { GuardLive, pathOf } from "./Guard.js"
import { HealthLive } from "./Health/Http.js"
import { ObserveLive } from "./Observe/Http.js"
import * as Logging from "./Logging.js"
import { SessionsLive } from "./Sessions/Http.js"
import * as Settings from "./Settings.js"
import { Shutdown } from "./Shutdown.js"

/** The Node server under the `HttpServer`, so shutdown can close its connections. */
export class NodeServer extends Context.Tag("converge/gateway/NodeServer")<NodeServer, Server>() {}

/** The API with its handlers. */
export const ApiLive = HttpApiBuilder.api(GatewayApi).pipe(
  Layer.provide([SessionsLive, EventsLive, HealthLive, ObserveLive])
)

const SESSION_PATH = /^\/v1\/sessions\/([^/]+)/

const utf8 = new TextDecoder()

/**
 * A 503 says when to come back: `Retry-After` in whole seconds, from an `Overloaded` answer's
 * `retryAfterMs` (rounded up), 1 s for the others (shutting down).
 */
export const withRetryAfter = (response: HttpServerResponse.HttpServerResponse) => {
  if (response.status !== 503 || response.headers["retry-after"] !== undefined) return response
  let ms = 1000
  if (response.body._tag === "Uint8Array") {
    try {
      const body = JSON.parse(utf8.decode(response.body.body)) as { readonly retryAfterMs?: unknown }
      if (typeof body.retryAfterMs === "number" && Number.isFinite(body.retryAfterMs)) ms = body.retryAfterMs
    } catch {
      // Not JSON: the default stands.
    }
  }
  return HttpServerResponse.setHeader(response, "retry-after", String(Math.max(1, Math.ceil(ms / 1000))))
}

/** One log line per request (method, path, status, duration, session key), counted as in flight. */
const requestLog = HttpMiddleware.make((app) =>
  Effect.gen(function* () {
    const shutdown = yield* Shutdown
    const request = yield* HttpServerRequest.HttpServerRequest
    const started = yield* Clock.currentTimeMillis
    const path = pathOf(request.url)
    const key = SESSION_PATH.exec(path)?.[1]
    // The response is written before a middleware sees it: the header goes in a pre-response handler.
    yield* HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(withRetryAfter(response)))
    const exit = yield* shutdown.track(Effect.exit(app))
    const status = Exit.isSuccess(exit) ? exit.value.status : Cause.isInterruptedOnly(exit.cause) ? 499 : 500
    yield* Effect.logInfo(`${request.method} ${path} ${status}`).pipe(
      Logging.withIds({ sessionKey: key === undefined ? undefined : decodeURIComponent(key) }),
      Effect.annotateLogs({
        method: request.method,
        path,
        status,
        durationMs: (yield* Clock.currentTimeMillis) - started
      })
    )
    return yield* exit
  })
)

/** Serves the API, `/openapi.json` and `/docs` behind the guard. Needs an `HttpServer`. */
export const HttpLive = HttpApiBuilder.serve(requestLog).pipe(
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(GuardLive),
  Layer.provide(ApiLive),
  // The router's default (100 characters) would answer 404 to an over-long key: the schema answers 400.
  Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 16_384 }))
)

/**
 * The Node server's limits, set for bursts (docs/admission.md): a burst of thousands of
 * connections waits in the kernel's accept queue (`backlog`, capped by `net.core.somaxconn`)
 * instead of being reset; a request must send its headers within `headersTimeout` and its
 * whole request within `requestTimeout`; an idle keep-alive connection is closed after
 * `keepAliveTimeout`, longer than the 60 s idle timeout load balancers commonly use, so a
 * balancer does not send on a connection the gateway is closing.
 */
export const serverLimits = {
  backlog: 4096,
  headersTimeout: 60_000,
  requestTimeout: 120_000,
  keepAliveTimeout: 65_000
} as const

/** A Node HTTP server bound to the configured host and port. */
const serverLayer = (settings: Settings.GatewaySettings) =>
  Layer.unwrapEffect(
    Effect.sync(() => {
      const server = createServer({
        headersTimeout: serverLimits.headersTimeout,
        requestTimeout: serverLimits.requestTimeout,
        keepAliveTimeout: serverLimits.keepAliveTimeout
      })
      return Layer.merge(
        NodeHttpServer.layer(() => server, {
          host: settings.config.host,
          port: settings.config.port,
          backlog: serverLimits.backlog
        }),
        Layer.succeed(NodeServer, server)
      )
    })
  )

const encodeEvent = Schema.encodeSync(LifecycleEvent)

/** Logs every lifecycle event with its ids (`sessionKey`, `runId`, `compactionId`, …). */
const logEvents = Effect.gen(function* () {
  const events = yield* LifecycleEvents
  // Its own events only: each gateway logs what it did, not what it relays.
  yield* events.stream({ localOnly: true }).pipe(
    Stream.runForEach((event) => {
      const { _tag, at: _at, ...fields } = encodeEvent(event)
      // A failure's own `message` becomes `detail`: the line's message is the event's tag.
      const { message: detail, ...rest } = fields as Record<string, unknown>
      const log =
        event._tag === "CompactionFailed" || event._tag === "Resync" ? Effect.logWarning : Effect.logInfo
      return log(_tag).pipe(
        Effect.annotateLogs({ event: _tag, ...rest, ...(detail === undefined ? {} : { detail }) })
      )
    })
  )
})

/**
 * Runs once the server listens: prints the address, logs events, and on release shuts down
 * in order: 503 for new requests → drain the runtime (interrupting what is left after
 * `drainTimeoutMs`, before its commit) → flush → answer what still waits → close connections.
 */
const Lifecycle = Layer.scopedDiscard(
  Effect.gen(function* () {
    const settings = yield* Settings.Settings
    const shutdown = yield* Shutdown
    const runner = yield* Runner
    const handle = yield* EmbeddedRuntime.RuntimeHandle
    const server = yield* HttpServer.HttpServer
    const node = yield* NodeServer
    const url = HttpServer.formatAddress(server.address)
    yield* Effect.forkScoped(logEvents)
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        yield* Effect.logInfo("shutting down: new requests get 503, running work drains").pipe(
          Effect.annotateLogs({ drainTimeoutMs: settings.config.drainTimeoutMs })
        )
        yield* shutdown.beginDrain
        yield* runner.beginShutdown
        yield* handle.close
        yield* shutdown.markClosed
        yield* shutdown.awaitIdle(settings.closeGraceMs)
        node.closeAllConnections()
        yield* Effect.logInfo("stopped")
      })
    )
    yield* Effect.logInfo(`Converge gateway listening on ${url}`).pipe(
      Effect.annotateLogs({
        url,
        sessionsDir: settings.config.sessionsDir,
        model: settings.config.model,
        auth: settings.config.token === undefined ? "none" : "bearer"
      })
    )
  })
)

/** The gateway on the `Runner`, `LifecycleEvents` and `RuntimeHandle` in context. */
export const layer = (settings: Settings.GatewaySettings) =>
  Lifecycle.pipe(
    Layer.provide(HttpLive),
    Layer.provideMerge(serverLayer(settings)),
    Layer.provide(Shutdown.Default),
    Layer.provide(Layer.succeed(Settings.Settings, settings))
  )

/** The gateway with its own runtime, built from `settings.config`; provider keys come from `env`. */
export const layerEmbedded = (settings: Settings.GatewaySettings, env: Record<string, string | undefined>) =>
  layer(settings).pipe(
    Layer.provide(EmbeddedRuntime.layer(settings.config, env)),
    // Outermost, so the tracer it sets is the one of every fiber the gateway and its runtime start.
    Layer.provide(Telemetry.layer(env))
  )

const logStartupFailure = (cause: Cause.Cause<unknown>) => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some" && failure.value instanceof ConfigError) {
    return Effect.logError(`cannot start: ${failure.value.message}`).pipe(
      Effect.annotateLogs({ variable: failure.value.variable, value: failure.value.value })
    )
  }
  if (failure._tag === "Some" && failure.value instanceof HttpServerError.ServeError) {
    const reason =
      failure.value.cause instanceof Error ? failure.value.cause.message : String(failure.value.cause)
    return Effect.logError(`cannot start: cannot listen: ${reason}`)
  }
  // A database error's own message (what PostgreSQL said) is in its `cause`; put it in the line.
  const reason = Cause.squash(cause)
  if (reason instanceof Error) {
    const inner = reason.cause instanceof Error ? `: ${reason.cause.message}` : ""
    return Effect.logError(`cannot start: ${reason.message}${inner}`, cause)
  }
  return Effect.logError("cannot start", cause)
}

/** The gateway of the process environment, with JSON logs: what `npm start` runs. */
export const GatewayLive = Layer.unwrapEffect(
  Effect.map(Settings.fromEnv(process.env), (settings) => layerEmbedded(settings, process.env))
).pipe(Layer.tapErrorCause(logStartupFailure), Layer.provide(Logging.layer))
