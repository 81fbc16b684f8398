/**
 * The event relay on a real database, two gateways (each its own `LifecycleEvents` and pool):
 * what one publishes the other's subscribers see, in order and once, and nothing is echoed
 * back; when the listening connection is killed, the subscribers get a `Resync` and events
 * flow again.
 */
import { type LifecycleEvent, TurnStarted } from "@converge/domain"
import { LifecycleEvents, RunnerConfig, trusted } from "@converge/runner"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Schedule, Stream } from "effect"
import * as Database from "../src/Database.js"
import { layerPgEvents } from "../src/PgEvents.js"
import { freshDatabase, terminateConnections } from "./db.js"

const gateway = (url: string) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(
      layerPgEvents({ url, probeEveryMs: 100, probeTimeoutMs: 300 }).pipe(
        Layer.provideMerge(LifecycleEvents.Default),
        Layer.provideMerge(RunnerConfig.layer()),
        Layer.provideMerge(Database.layer({ url, maxConnections: 2 }))
      )
    )
    const events = Context.get(context, LifecycleEvents)
    const seen: Array<LifecycleEvent> = []
    yield* Effect.forkScoped(
      Stream.runForEach(yield* events.subscribe(), (e) => Effect.sync(() => seen.push(e)))
    )
    return { events, seen }
  })

const started = (n: number) =>
  new TurnStarted(
    { sessionKey: "agent:main:ev", sessionId: "s-1", generation: 1, at: n, runId: `run-${n}` },
    trusted
  )

/** Waits (real time: the database answers in real time) until `check` holds. */
const eventually = (check: () => boolean) =>
  Effect.suspend(() => (check() ? Effect.void : Effect.fail("not yet"))).pipe(
    Effect.retry(Schedule.spaced("10 millis").pipe(Schedule.upTo("10 seconds")))
  )

const runIds = (seen: ReadonlyArray<LifecycleEvent>) =>
  seen.flatMap((e) => (e._tag === "TurnStarted" ? [e.runId] : []))

describe("lifecycle events across gateways", () => {
  it.scopedLive("what one gateway publishes the other sees, in order, once, and nothing comes back", () =>
    Effect.gen(function* () {
      const { url } = yield* freshDatabase("converge_ev")
      const a = yield* gateway(url)
      const b = yield* gateway(url)
      for (let n = 1; n <= 50; n++) yield* a.events.publish(started(n))
      yield* eventually(() => runIds(b.seen).length >= 50)
      expect(runIds(b.seen)).toEqual(Array.from({ length: 50 }, (_, i) => `run-${i + 1}`))
      yield* b.events.publish(started(51))
      yield* eventually(() => runIds(a.seen).includes("run-51"))
      expect(runIds(a.seen)).toHaveLength(51)
      expect(runIds(b.seen)).toHaveLength(51)
    })
  )

  it.scopedLive("a killed listening connection gives the subscribers a Resync, and events flow again", () =>
    Effect.gen(function* () {
      const { name, url } = yield* freshDatabase("converge_ev")
      const a = yield* gateway(url)
      const b = yield* gateway(url)
      yield* a.events.publish(started(1))
      yield* eventually(() => runIds(b.seen).includes("run-1"))
      expect(yield* terminateConnections(name)).toBeGreaterThan(0)
      yield* eventually(() => b.seen.some((e) => e._tag === "Resync"))
      // Once listening again, what A publishes reaches B.
      yield* Effect.repeat(
        Effect.gen(function* () {
          yield* a.events.publish(started(2))
          return runIds(b.seen).includes("run-2")
        }).pipe(Effect.delay("50 millis")),
        { until: (ok) => ok, times: 200 }
      )
      expect(runIds(b.seen)).toContain("run-2")
    })
  )
})
