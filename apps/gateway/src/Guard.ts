/**
 * The API-wide middleware: bearer token, 503 while shutting down, the 1 MiB body limit,
 * JSON bodies, and the translation of decode and routing failures into `{_tag, message}`.
 * Bad input never becomes a 500.
 */
import { createHash, timingSafeEqual } from "node:crypto"
import {
  Headers,
  HttpApiBuilder,
  HttpApiError,
  HttpApp,
  HttpIncomingMessage,
  HttpMethod,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { Cause, Effect, Option } from "effect"
import type { ShuttingDown } from "@converge/domain"
import { GatewayApi } from "./Api.js"
import { BadRequest, PayloadTooLarge, RouteNotFound, Unauthorized } from "./Errors.js"
import { Settings } from "./Settings.js"
import { Shutdown, shuttingDown } from "./Shutdown.js"

const digest = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest()

/** The path of a request URL, without its query. */
export const pathOf = (url: string): string => {
  const q = url.indexOf("?")
  return q === -1 ? url : url.slice(0, q)
}

/** The schema's message, one issue per clause: `message: Expected string, actual 5`. */
export const decodeMessage = (error: HttpApiError.HttpApiDecodeError): string => {
  const at = (path: ReadonlyArray<PropertyKey>) => path.map(String).join(".")
  // An optional field fails twice (its type, and "Expected undefined"): the second says nothing.
  const issues = error.issues.filter(
    (i) =>
      !(
        i.message.startsWith("Expected undefined,") &&
        error.issues.some((j) => j !== i && at(j.path) === at(i.path))
      )
  )
  return issues.length === 0
    ? error.message
    : issues.map((i) => (i.path.length > 0 ? `${at(i.path)}: ${i.message}` : i.message)).join("; ")
}

/** Checks `Authorization: Bearer <token>` in constant time (both sides hashed to the same length). */
const authorize = (
  expected: Buffer | undefined,
  header: string | undefined
): Effect.Effect<void, Unauthorized> => {
  if (expected === undefined) return Effect.void
  if (header === undefined || !header.startsWith("Bearer ")) {
    return Effect.fail(new Unauthorized({ message: "this gateway needs Authorization: Bearer <token>" }))
  }
  return timingSafeEqual(digest(header.slice("Bearer ".length)), expected)
    ? Effect.void
    : Effect.fail(new Unauthorized({ message: "the bearer token is not valid" }))
}

/** Routes that answer without the token: the health check, and the page that asks for the token. */
const OPEN_PATHS: ReadonlySet<string> = new Set(["/healthz", "/"])

/** How far past the limit a body without a length is read before the connection is dropped. */
const HARD_CAP_FACTOR = 16

const isJsonType = (contentType: string | undefined): boolean =>
  contentType !== undefined && /^application\/([\w.+-]*\+)?json\b/i.test(contentType.trim())

/**
 * Reads the body (at most `max` bytes) and checks that it is JSON. The returned request has
 * the body cached and says `application/json`, whatever the client sent, so the API decodes
 * it as JSON.
 */
const prepareBody = (
  request: HttpServerRequest.HttpServerRequest,
  max: number
): Effect.Effect<HttpServerRequest.HttpServerRequest, BadRequest | PayloadTooLarge> =>
  Effect.gen(function* () {
    if (!HttpMethod.hasBody(request.method)) return request
    const tooLarge = (size: string) =>
      new PayloadTooLarge({ message: `the request body is ${size}; at most ${max} bytes are allowed` })
    const declared = request.headers["content-length"]
    if (declared !== undefined && Number(declared) > max)
      return yield* Effect.fail(tooLarge(`${declared} bytes`))
    const json = isJsonType(request.headers["content-type"])
      ? request
      : request.modify({ headers: Headers.set(request.headers, "content-type", "application/json") })
    // A body sent without a length is read up to a hard cap, so that the client still gets its 413;
    // past the cap the connection is dropped.
    const text = yield* json.text.pipe(
      HttpIncomingMessage.withMaxBodySize(Option.some(max * HARD_CAP_FACTOR)),
      Effect.mapError((e) =>
        String(e.cause).includes("maxBytes")
          ? tooLarge(`over ${max * HARD_CAP_FACTOR} bytes`)
          : new BadRequest({ message: `the request body could not be read: ${e.message}` })
      )
    )
    const size = Buffer.byteLength(text, "utf8")
    if (size > max) return yield* Effect.fail(tooLarge(`${size} bytes`))
    if (text.trim() !== "") {
      try {
        JSON.parse(text)
      } catch (e) {
        return yield* Effect.fail(
          new BadRequest({
            message: `the request body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`
          })
        )
      }
    }
    return json
  })

/** During shutdown an answer closes its connection, so that the client does not reuse it. */
const closeConnection = HttpApp.appendPreResponseHandler((_, response) =>
  Effect.succeed(HttpServerResponse.setHeader(response, "connection", "close"))
)

/** Turns what the router and the decoders fail with into the API's errors. */
const translate =
  (request: HttpServerRequest.HttpServerRequest, draining: Effect.Effect<boolean>) =>
  <E>(cause: Cause.Cause<E>): Effect.Effect<never, E | BadRequest | RouteNotFound | ShuttingDown> =>
    Effect.gen(function* () {
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure)) {
        const error = failure.value
        if (error instanceof HttpApiError.HttpApiDecodeError) {
          return yield* Effect.fail(new BadRequest({ message: decodeMessage(error) }))
        }
        if (error instanceof HttpServerError.RouteNotFound) {
          return yield* Effect.fail(
            new RouteNotFound({ message: `no route for ${request.method} ${pathOf(request.url)}` })
          )
        }
      } else if (Cause.isInterruptedOnly(cause) && (yield* draining)) {
        // The runtime interrupted the work this request waited on: it is shutting down.
        return yield* Effect.fail(shuttingDown())
      }
      return yield* Effect.failCause(cause)
    })

/** The middleware, applied to every route (the docs and `/openapi.json` included). */
export const GuardLive = HttpApiBuilder.middleware(
  GatewayApi,
  Effect.gen(function* () {
    const settings = yield* Settings
    const shutdown = yield* Shutdown
    const token = settings.config.token
    const expected = token === undefined ? undefined : digest(token)
    const closed = shutdown.closed.pipe(
      Effect.zipRight(closeConnection),
      Effect.zipRight(Effect.fail(shuttingDown()))
    )
    return (app: HttpApp.Default) =>
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        if (!OPEN_PATHS.has(pathOf(request.url))) yield* authorize(expected, request.headers.authorization)
        if (yield* shutdown.isDraining)
          return yield* closeConnection.pipe(Effect.zipRight(Effect.fail(shuttingDown())))
        const prepared = yield* prepareBody(request, settings.maxBodyBytes)
        return yield* app.pipe(
          Effect.provideService(HttpServerRequest.HttpServerRequest, prepared),
          Effect.catchAllCause(translate(request, shutdown.isDraining)),
          Effect.raceFirst(closed)
        )
      }).pipe(
        // The server runs apps uninterruptibly and opens routes itself; the guard's own waits
        // (the body, the race with shutdown) must yield to a client that goes away.
        Effect.interruptible
      )
  })
)
