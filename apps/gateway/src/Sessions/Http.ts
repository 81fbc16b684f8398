/**
 * Handlers of the sessions routes: each decodes its request and hands it to the
 * `SessionRouter` (the runtime's `Runner`, or on a database the session's owner in the
 * cluster, wherever it runs; a `Runner` alone in context is used directly).
 * The work a request starts belongs to the runtime: a client that goes away stops waiting,
 * not the turn or the compaction.
 */
import { HttpApiBuilder } from "@effect/platform"
import { Effect, Option } from "effect"
import { SessionRouter } from "@converge/cluster"
import { Runner } from "@converge/runner"
import { GatewayApi } from "../Api.js"
import { withIds } from "../Logging.js"

/** The sessions group, on the `Runner` in context. */
export const SessionsLive = HttpApiBuilder.group(GatewayApi, "sessions", (handlers) =>
  Effect.gen(function* () {
    const runner = yield* Runner
    const router = Option.getOrElse(yield* Effect.serviceOption(SessionRouter), () =>
      SessionRouter.local(runner)
    )
    return handlers
      .handle("turn", ({ path, payload, headers }) =>
        router
          .turn(path.key, payload.message, {
            timeoutMs: payload.timeoutMs,
            idempotencyKey: headers["idempotency-key"]
          })
          .pipe(
            Effect.tap((result) =>
              Effect.logInfo(`turn ${result.outcome}`).pipe(
                withIds({
                  sessionKey: result.sessionKey,
                  runId: result.runId,
                  compactionId: result.compaction.compactionId
                }),
                Effect.annotateLogs({
                  outcome: result.outcome,
                  compaction: result.compaction.state,
                  ...(result.timeout !== undefined ? { timeout: result.timeout } : {})
                })
              )
            )
          )
      )
      .handle("compact", ({ path, payload }) =>
        router
          .compact(path.key, payload ?? {})
          .pipe(
            Effect.tap((result) =>
              Effect.logInfo(`compaction ${result.state}`).pipe(
                withIds({ sessionKey: path.key, compactionId: result.compactionId }),
                Effect.annotateLogs({ joined: result.joined })
              )
            )
          )
      )
      .handle("cancelCompaction", ({ path }) => router.cancelCompaction(path.key))
      .handle("status", ({ path }) => router.status(path.key))
      .handle("list", () => Effect.map(runner.sessions, (sessions) => ({ sessions })))
      .handle("reset", ({ path }) => router.reset(path.key))
  })
)
