/**
 * The one `PubSub` of lifecycle events. Each consumer gets its own `Stream`; a consumer
 * more than `eventBufferSize` events behind loses the oldest ones and receives `Resync`.
 * No state rides on it: every event was applied by the Reconciler before it is published.
 */
import { Clock, Effect, Metric, PubSub, type Scope, Stream } from "effect"
import { type LifecycleEvent, Metrics, Resync } from "@converge/domain"
import { RunnerConfig, trusted } from "./RunnerConfig.js"

interface Envelope {
  readonly n: number
  readonly event: LifecycleEvent
  /** Published here on behalf of another process (a gateway on the same database). */
  readonly remote: boolean
}

/** Options of a subscription. */
export interface SubscribeOptions {
  /** Only events of this session key (and `Resync`). */
  readonly sessionKey?: string | undefined
  /**
   * Only the events this process published itself, not those relayed from other gateways (its
   * log, and the relay that sends them on). Such a subscription is not counted in
   * `subscriberCount`.
   */
  readonly localOnly?: boolean | undefined
}

/** Options of `publish`. */
export interface PublishOptions {
  /** The event comes from another process (see `SubscribeOptions.localOnly`). */
  readonly remote?: boolean | undefined
}

export class LifecycleEvents extends Effect.Service<LifecycleEvents>()("converge/LifecycleEvents", {
  scoped: Effect.gen(function* () {
    const config = yield* RunnerConfig
    // Sliding: publishing never waits on a slow consumer; the consumer sees a gap in `n`.
    const pubsub = yield* Effect.acquireRelease(
      PubSub.sliding<Envelope>(config.eventBufferSize),
      PubSub.shutdown
    )
    let counter = 0
    let subscribers = 0

    const publish = (event: LifecycleEvent, options: PublishOptions = {}): Effect.Effect<void> =>
      Effect.suspend(() =>
        PubSub.publish(pubsub, { n: ++counter, event, remote: options.remote === true })
      ).pipe(Effect.asVoid)

    const resync = (sessionKey: string) =>
      Clock.currentTimeMillis.pipe(
        Effect.map((at) => new Resync({ sessionKey, sessionId: "", generation: 0, at }, trusted)),
        Effect.zipLeft(Metric.increment(Metrics.resyncs))
      )

    // `subscribedAt` is the count when the subscription began: a gap after it is a loss.
    const fromEnvelopes = (
      envelopes: Stream.Stream<Envelope>,
      options: SubscribeOptions,
      subscribedAt: number
    ) => {
      const key = options.sessionKey
      const localOnly = options.localOnly === true
      return envelopes.pipe(
        Stream.mapAccumEffect(
          subscribedAt,
          (last, envelope): Effect.Effect<readonly [number, ReadonlyArray<LifecycleEvent>]> => {
            const events = localOnly && envelope.remote ? [] : [envelope.event]
            return envelope.n > last + 1
              ? resync(key ?? "").pipe(Effect.map((r) => [envelope.n, [r, ...events]] as const))
              : Effect.succeed([envelope.n, events] as const)
          }
        ),
        Stream.flattenIterables,
        Stream.filter(
          (event: LifecycleEvent) => key === undefined || event._tag === "Resync" || event.sessionKey === key
        )
      )
    }

    /** Subscribes now (within the scope) and returns the stream of what follows. */
    const subscribe = (
      options: SubscribeOptions = {}
    ): Effect.Effect<Stream.Stream<LifecycleEvent>, never, Scope.Scope> =>
      Effect.suspend(() => {
        const at = counter
        return Stream.fromPubSub(pubsub, { scoped: true }).pipe(
          Effect.tap(() =>
            options.localOnly === true
              ? Effect.void
              : Effect.acquireRelease(
                  Effect.sync(() => {
                    subscribers++
                  }),
                  () =>
                    Effect.sync(() => {
                      subscribers--
                    })
                )
          ),
          Effect.map((s) => fromEnvelopes(s, options, at))
        )
      })

    /** A stream that subscribes when it is run. */
    const stream = (options: SubscribeOptions = {}): Stream.Stream<LifecycleEvent> =>
      Stream.unwrapScoped(subscribe(options))

    /** How many subscriptions that take relayed events are open now. */
    const subscriberCount = Effect.sync(() => subscribers)

    return { publish, subscribe, stream, subscriberCount } as const
  })
}) {}
