/**
 * The runtime the gateway embeds, built in a scope of its own so that shutdown can close
 * it (drain, interrupt before commit, flush) while the HTTP server still answers 503.
 */
import { Context, Effect, Exit, Layer, Option, Scope } from "effect"
import { type Config, sessionIdProblem } from "@converge/domain"
import { layer as runtimeLayer } from "@converge/runtime"
import { SessionStore } from "@converge/store"

/** Closes the embedded runtime; closing twice is a no-op. */
export class RuntimeHandle extends Context.Tag("converge/gateway/RuntimeHandle")<
  RuntimeHandle,
  { readonly close: Effect.Effect<void> }
>() {
  /** A handle whose `close` does nothing (for runners provided from outside). */
  static readonly noop: Layer.Layer<RuntimeHandle> = Layer.succeed(RuntimeHandle, { close: Effect.void })
}

/** Logs what start-up found on disk that cannot be served, and a `sessions.json` moved aside. */
const reportStartup = Effect.gen(function* () {
  const store = yield* SessionStore
  const corrupt = yield* store.corrupt
  if (Option.isSome(corrupt)) {
    yield* Effect.logError(corrupt.value.message).pipe(
      Effect.annotateLogs({ path: corrupt.value.path, movedTo: corrupt.value.movedTo ?? null })
    )
  }
  for (const [sessionKey, entry] of yield* store.list) {
    const problem = sessionIdProblem(entry.sessionId)
    if (problem === undefined) continue
    yield* Effect.logWarning(`session entry cannot be served: ${problem}`).pipe(
      Effect.annotateLogs({ sessionKey, sessionId: entry.sessionId })
    )
  }
  // Values that are not session entries at all are reported by the store as it reads them.
})

/** The runtime of `config` (store, transcript, runner, events, model) and its handle. */
export const layer = (config: Config, env: Record<string, string | undefined>) =>
  Layer.scopedContext(
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      yield* Effect.addFinalizer((exit) => Scope.close(scope, exit))
      const context = yield* Layer.buildWithScope(runtimeLayer(config, env), scope)
      yield* reportStartup.pipe(Effect.provide(context))
      return Context.add(context, RuntimeHandle, { close: Scope.close(scope, Exit.void) })
    })
  )
