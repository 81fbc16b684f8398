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
import { Chunk, Clock, Deferred, Duration, Effect, Fiber, Layer, Schedule, Schema, Stream } from "effect"

export const EVENTS_CHANNEL = "converge_events"

/**
 * What goes on the channel: `{ origin, events }` (events in the order they were published, as
 * many as fit one notification) or `{ origin, probe }` (a gateway's probe of its own listening).
 * The envelope is read with `JSON.parse`; the events are decoded only where someone subscribes.
 */
const Events = Schema.Array(LifecycleEventSchema)
const decodeEvents = Schema.decodeUnknown(Events)
const encodeEvent = Schema.encode(LifecycleEventSchema)

interface Envelope {
  readonly origin?: unknown
  readonly probe?: unknown
  readonly events?: unknown
}

/** Events sent in one notification, at most (and within `MAX_PAYLOAD`). */
const BATCH = 64

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

    const resync = Effect.map(
      Clock.currentTimeMillis,
      (at) => new Resync({ sessionKey: "", sessionId: "", generation: 0, at }, trusted)
    )

    const notify = (payload: string) =>
      // `pg_notify` rather than the client's `notify`, whose `NOTIFY channel, $1` the server
      // refuses (NOTIFY takes no parameters).
      Effect.asVoid(sql`SELECT pg_notify(${EVENTS_CHANNEL}, ${payload})`)

    /** Sends `batch` in as few notifications as fit; an event too large for one goes as a `Resync`. */
    const send = (batch: ReadonlyArray<LifecycleEvent>): Effect.Effect<void> =>
      Effect.gen(function* () {
        let pending: Array<unknown> = []
        let size = 0
        const flush = Effect.suspend(() => {
          if (pending.length === 0) return Effect.void
          const payload = JSON.stringify({ origin, events: pending })
          pending = []
          size = 0
          return notify(payload)
        })
        for (const event of batch) {
          let encoded: unknown = yield* encodeEvent(event)
          let length = JSON.stringify(encoded).length
          // Too large to notify (a long error message): the others learn that they missed one.
          if (length > MAX_PAYLOAD - 200) {
            encoded = yield* encodeEvent(yield* resync)
            length = JSON.stringify(encoded).length
          }
          if (size + length > MAX_PAYLOAD - 200) yield* flush
          pending.push(encoded)
          size += length + 1
        }
        yield* flush
      }).pipe(
        Effect.catchAll((e) =>
          Effect.logWarning(`events on ${where}: cannot send ${batch.length} events: ${e.message}`)
        )
      )

    // Out: one subscription, sent in order, a batch at a time (each notification is committed
    // before the next is sent). A `Resync` it receives is this gateway's own loss: the others
    // are told too.
    const outgoing = yield* events.subscribe({ localOnly: true })
    yield* Effect.forkScoped(
      outgoing.pipe(
        Stream.groupedWithin(BATCH, Duration.millis(2)),
        Stream.runForEach((chunk) => send(Chunk.toReadonlyArray(chunk)))
      )
    )

    // In: every notification of another gateway, published here as it came. This gateway's
    // own probes come back on the same connection: the first says it is listening (the layer
    // is ready only then, so no event sent after start-up is missed); one that does not come
    // back within `probeTimeoutMs` says the connection is gone, and listening starts again.
    let probesSeen = 0
    // This gateway's loss, not news for the others: published as relayed, so it is not sent.
    const lost = Effect.flatMap(resync, (r) => events.publish(r, { remote: true }))
    const listenOnce = pg.listen(EVENTS_CHANNEL).pipe(
      Stream.runForEach((payload) =>
        Effect.gen(function* () {
          let envelope: Envelope
          try {
            envelope = JSON.parse(payload) as Envelope
          } catch {
            return yield* Effect.logWarning(`events on ${where}: a notification that is not JSON`)
          }
          if (envelope.origin === origin) {
            if (typeof envelope.probe === "number") probesSeen = Math.max(probesSeen, envelope.probe)
            return
          }
          if (envelope.events === undefined) return
          // Nobody here takes relayed events (no `/v1/events` client): nothing to decode or publish.
          if ((yield* events.subscriberCount) === 0) return
          const decoded = yield* decodeEvents(envelope.events).pipe(Effect.option)
          if (decoded._tag === "None")
            return yield* Effect.logWarning(`events on ${where}: a notification whose events cannot be read`)
          for (const event of decoded.value) yield* events.publish(event, { remote: true })
        })
      )
    )
    let probes = 0
    /** Sends a probe and waits (polling) until it came back, at most `withinMs`. */
    const probe = (withinMs: number) =>
      Effect.gen(function* () {
        const n = ++probes
        yield* notify(JSON.stringify({ origin, probe: n }))
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
