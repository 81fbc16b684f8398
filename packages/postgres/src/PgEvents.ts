/**
 * Lifecycle events across the gateways of one database: every event this gateway publishes
 * is sent on the `converge_events` channel (`NOTIFY`), and every event another gateway sent
 * is published here (`LISTEN`), so a subscriber of `GET /v1/events` on any gateway sees the
 * events of every session — the contract of DESIGN §7 unchanged: per session in the order
 * they were published (one gateway works a session at a time, and its notifications are sent
 * one after the other), `CompactionCompleted` once (only the gateway whose append created the
 * entry publishes it), and `Resync` where events were lost: when this gateway could not
 * send them, or its listening connection dropped.
 */
import {
  type LifecycleEvent,
  LifecycleEvent as LifecycleEventSchema,
  maskUrl,
  Resync
} from "@converge/domain"
import { LifecycleEvents, trusted } from "@converge/runner"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Clock, Deferred, Duration, Effect, Fiber, Layer, Schedule, Schema, Stream } from "effect"

export const EVENTS_CHANNEL = "converge_events"

/** What goes on the channel: an event, or a gateway's probe of its own listening, and who sent it. */
const Message = Schema.parseJson(
  Schema.Union(
    Schema.Struct({ origin: Schema.String, event: LifecycleEventSchema }),
    Schema.Struct({ origin: Schema.String, probe: Schema.Number })
  )
)
const encodeMessage = Schema.encode(Message)
const decodeMessage = Schema.decodeUnknown(Message)

/** A notification payload must stay under PostgreSQL's 8 000 bytes. */
const MAX_PAYLOAD = 7_900

/** Options of the relay. */
export interface PgEventsOptions {
  /** For messages (masked). */
  readonly url: string
  /** How often the listening connection is probed (default 5 000 ms). */
  readonly probeEveryMs?: number
  /** A probe not back within this long means the connection is lost (default 2 000 ms). */
  readonly probeTimeoutMs?: number
  /** Start-up waits at most this long to be listening (default 5 000 ms). */
  readonly startTimeoutMs?: number
}

/** Relays lifecycle events between this gateway and the others on the database, for the scope's life. */
export const relay = (options: PgEventsOptions) =>
  Effect.gen(function* () {
    const pg = yield* PgClient.PgClient
    const sql = yield* SqlClient.SqlClient
    const events = yield* LifecycleEvents
    const origin = crypto.randomUUID()
    const where = maskUrl(options.url)
    const probeEveryMs = options.probeEveryMs ?? 5_000
    const probeTimeoutMs = options.probeTimeoutMs ?? 2_000
    const startTimeoutMs = options.startTimeoutMs ?? 5_000
    /** Events that came from another gateway: published here, not sent back. */
    const received = new WeakSet<LifecycleEvent>()

    const resync = Effect.map(
      Clock.currentTimeMillis,
      (at) => new Resync({ sessionKey: "", sessionId: "", generation: 0, at }, trusted)
    )

    const send = (event: LifecycleEvent): Effect.Effect<void> =>
      Effect.gen(function* () {
        let payload = yield* encodeMessage({ origin, event })
        // Too large to notify (a long error message): the others learn that they missed one.
        if (payload.length > MAX_PAYLOAD) payload = yield* encodeMessage({ origin, event: yield* resync })
        // `pg_notify` rather than the client's `notify`, whose `NOTIFY channel, $1` the server
        // refuses (NOTIFY takes no parameters).
        yield* sql`SELECT pg_notify(${EVENTS_CHANNEL}, ${payload})`
      }).pipe(
        Effect.catchAll((e) =>
          Effect.logWarning(`events on ${where}: cannot send ${event._tag}: ${e.message}`)
        )
      )

    // Out: one subscription, sent in order (each NOTIFY is committed before the next is sent).
    // A `Resync` it receives is this gateway's own loss: the others are told too.
    const outgoing = yield* events.subscribe()
    yield* Effect.forkScoped(
      Stream.runForEach(outgoing, (event) => (received.has(event) ? Effect.void : send(event)))
    )

    // In: every notification of another gateway, published here as it came. This gateway's
    // own probes come back on the same connection: the first says it is listening (the layer
    // is ready only then, so no event sent after start-up is missed); one that does not come
    // back within `probeTimeoutMs` says the connection is gone, and listening starts again.
    let probesSeen = 0
    const lost = Effect.flatMap(resync, (r) => {
      received.add(r) // this gateway's loss, not news for the others
      return events.publish(r)
    })
    const listenOnce = pg.listen(EVENTS_CHANNEL).pipe(
      Stream.runForEach((payload) =>
        decodeMessage(payload).pipe(
          Effect.flatMap((message) => {
            if (message.origin === origin) {
              if ("probe" in message) probesSeen = Math.max(probesSeen, message.probe)
              return Effect.void
            }
            if (!("event" in message)) return Effect.void
            received.add(message.event)
            return events.publish(message.event)
          }),
          Effect.catchAll((e) =>
            Effect.logWarning(`events on ${where}: a notification that is not an event: ${e.message}`)
          )
        )
      )
    )
    let probes = 0
    /** Sends a probe and waits (polling) until it came back, at most `withinMs`. */
    const probe = (withinMs: number) =>
      Effect.gen(function* () {
        const n = ++probes
        const payload = yield* encodeMessage({ origin, probe: n })
        yield* sql`SELECT pg_notify(${EVENTS_CHANNEL}, ${payload})`
        return yield* Effect.suspend(() =>
          probesSeen >= n ? Effect.succeed(true) : Effect.fail("not yet")
        ).pipe(
          Effect.retry(Schedule.spaced(Duration.millis(5))),
          Effect.timeoutTo({
            duration: Duration.millis(withinMs),
            onTimeout: () => false,
            onSuccess: (b) => b
          })
        )
      }).pipe(Effect.catchAll(() => Effect.succeed(false)))
    /** Probes until one comes back (the LISTEN may not be in place yet), within `probeTimeoutMs`. */
    const listening = Effect.repeat(probe(100), {
      until: (seen) => seen,
      times: Math.max(1, Math.ceil(probeTimeoutMs / 100))
    })

    const ready = yield* Deferred.make<void>()
    // Whether the last attempt was listening: a loss is said (a warning, one `Resync`) once,
    // when listening stops, not at every attempt while the database is away.
    let wasListening = false
    let everListened = false
    let failedAttempts = 0
    const session = Effect.gen(function* () {
      const listener = yield* Effect.fork(listenOnce)
      const alive = Effect.repeat(probe(probeTimeoutMs), {
        while: (seen) => seen,
        schedule: Schedule.spaced(Duration.millis(probeEveryMs))
      })
      if (yield* listening) {
        // Events sent while this gateway was not listening are lost: its subscribers resync.
        if (everListened && failedAttempts > 0) {
          yield* Effect.logInfo(`events on ${where}: listening again after ${failedAttempts} attempts`)
          yield* lost
        }
        everListened = true
        wasListening = true
        failedAttempts = 0
        yield* Deferred.succeed(ready, undefined)
        yield* Effect.raceFirst(alive, Fiber.join(listener).pipe(Effect.ignore))
      }
      yield* Fiber.interrupt(listener)
      if (wasListening) {
        wasListening = false
        yield* Effect.logWarning(
          `events on ${where}: not listening (the connection was lost); listening again`
        )
        yield* lost
      }
      failedAttempts++
      // 100 ms, doubling, at most 2 s between attempts while the database is away.
      yield* Effect.sleep(Duration.millis(Math.min(2_000, 100 * 2 ** Math.min(failedAttempts - 1, 5))))
    })
    yield* Effect.forkScoped(Effect.forever(session))
    yield* Deferred.await(ready).pipe(
      Effect.timeout(Duration.millis(startTimeoutMs)),
      Effect.catchAll(() =>
        Effect.logWarning(`events on ${where}: not listening after ${startTimeoutMs} ms; starting anyway`)
      )
    )
  })

/** The relay as a layer over `LifecycleEvents` and the database's `PgClient`. */
export const layerPgEvents = (
  options: PgEventsOptions
): Layer.Layer<never, never, LifecycleEvents | PgClient.PgClient | SqlClient.SqlClient> =>
  Layer.scopedDiscard(relay(options))
