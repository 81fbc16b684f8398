/**
 * Handlers of the sessions routes: each decodes its request and hands it to the `Runner`.
 * The work a request starts belongs to the runtime: a client that goes away stops waiting,
 * not the turn or the compaction.
 */
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { Runner } from "@converge/runner"
import { GatewayApi } from "../Api.js"
import { withIds } from "../Logging.js"

/** The sessions group, on the `Runner` in context. */
export const SessionsLive = HttpApiBuilder.group(GatewayApi, "sessions", (handlers) =>
  Effect.gen(function* () {
    const runner = yield* Runner
    return handlers
      .handle("turn", ({ path, payload, headers }) =>
        runner
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
        runner
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
      .handle("cancelCompaction", ({ path }) => runner.cancelCompaction(path.key))
      .handle("status", ({ path }) => runner.status(path.key))
      .handle("list", () => Effect.map(runner.sessions, (sessions) => ({ sessions })))
      .handle("reset", ({ path }) => runner.reset(path.key))
  })
)
