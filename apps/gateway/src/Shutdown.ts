/**
 * The gateway's side of shutdown: once draining, every new request gets 503; once the
 * runtime is closed, requests still waiting on it get 503 too and event streams end.
 */
import { Deferred, type Duration, Effect } from "effect"
import { ShuttingDown } from "@converge/domain"

/** The answer to a request that arrives, or is still waiting, during shutdown. */
export const shuttingDown = () => new ShuttingDown({ message: "the gateway is shutting down" })

export class Shutdown extends Effect.Service<Shutdown>()("converge/gateway/Shutdown", {
  effect: Effect.gen(function* () {
    const draining = yield* Deferred.make<void>()
    const closed = yield* Deferred.make<void>()
    let inFlight = 0
    const idle = yield* Effect.makeLatch(true)

    /** Counts `effect` as an in-flight request while it runs. */
    const track = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.acquireUseRelease(
        Effect.flatMap(
          Effect.sync(() => ++inFlight),
          () => idle.close
        ),
        () => effect,
        () => Effect.suspend(() => (--inFlight === 0 ? idle.open : Effect.void))
      )

    return {
      /** True from the first signal on. */
      isDraining: Deferred.isDone(draining),
      /** Completes when draining begins. */
      draining: Deferred.await(draining),
      /** Completes when the runtime has been closed. */
      closed: Deferred.await(closed),
      /** Stop accepting: new requests get 503. */
      beginDrain: Deferred.succeed(draining, undefined).pipe(Effect.asVoid),
      /** The runtime is closed: waiters give up with 503, event streams end. */
      markClosed: Deferred.succeed(closed, undefined).pipe(Effect.asVoid),
      track,
      /** Waits until no request is in flight, at most `bound` (also from a finalizer, which is uninterruptible). */
      awaitIdle: (bound: Duration.DurationInput) =>
        idle.await.pipe(Effect.interruptible, Effect.timeoutOption(bound), Effect.asVoid)
    } as const
  })
}) {}
