/**
 * `GET /v1/events` as server-sent events. Each connection subscribes to the runtime's
 * `LifecycleEvents` on its own: publishing never waits for it, and a connection that falls
 * more than `eventBufferSize` events behind gets `Resync` instead of slowing anything.
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Duration, Effect, Metric, Schedule, Schema, Stream } from "effect"
import { LifecycleEvent, Metrics } from "@converge/domain"
import { LifecycleEvents, type SubscribeOptions } from "@converge/runner"
import { GatewayApi } from "../Api.js"
import { Settings } from "../Settings.js"
import { Shutdown } from "../Shutdown.js"

const encodeEvent = Schema.encodeSync(LifecycleEvent)

/** One event as an SSE block: `id`, `event: <_tag>`, `data: <json>`. */
export const formatEvent = (id: number, event: LifecycleEvent): string => {
  const { _tag, ...fields } = encodeEvent(event)
  return `id: ${id}\nevent: ${_tag}\ndata: ${JSON.stringify({ _tag, ...fields })}\n\n`
}

/** Sent first, once the subscription is in place: events published after it are not missed. */
export const CONNECTED = ": connected\n\n"
/** Sent while the stream is idle, so proxies keep the connection open. */
export const KEEP_ALIVE = ": keep-alive\n\n"

/** The events group. */
export const EventsLive = HttpApiBuilder.group(GatewayApi, "events", (handlers) =>
  Effect.gen(function* () {
    const events = yield* LifecycleEvents
    const settings = yield* Settings
    const shutdown = yield* Shutdown

    const body = (options: SubscribeOptions): Stream.Stream<Uint8Array> =>
      Stream.unwrapScoped(
        Effect.acquireRelease(Metric.increment(Metrics.sseSubscribers), () =>
          Metric.incrementBy(Metrics.sseSubscribers, -1)
        ).pipe(
          Effect.zipRight(events.subscribe(options)),
          Effect.map((stream) => {
            const frames = stream.pipe(
              Stream.zipWithIndex,
              Stream.map(([event, index]) => formatEvent(index + 1, event))
            )
            const keepAlive = Stream.fromSchedule(
              Schedule.spaced(Duration.millis(settings.keepAliveMs))
            ).pipe(Stream.as(KEEP_ALIVE))
            return Stream.make(CONNECTED).pipe(
              Stream.concat(Stream.merge(frames, keepAlive, { haltStrategy: "left" }))
            )
          })
        )
        // Open through the drain, so consumers hear how running work ended; the runtime's close ends it.
      ).pipe(Stream.interruptWhen(shutdown.closed), Stream.encodeText)

    return handlers.handle("events", ({ urlParams }) =>
      Effect.succeed(
        HttpServerResponse.stream(
          body(urlParams.session === undefined ? {} : { sessionKey: urlParams.session }),
          {
            contentType: "text/event-stream",
            headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
          }
        )
      )
    )
  })
)
