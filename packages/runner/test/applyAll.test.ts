/**
 * `Reconciler.applyAll` joins a run of one session version's events into one merge; that
 * must leave the store exactly as applying them one at a time does, whatever the events,
 * their order, duplicates, stale versions and resets among them.
 */
import { expect, it } from "@effect/vitest"
import { afterAll } from "vitest"
import { Path } from "@effect/platform"
import { Effect, FastCheck as fc, Layer, ManagedRuntime, Option, TestContext } from "effect"
import {
  CompactionCompleted,
  type LifecycleEvent,
  SessionReset,
  TurnFinished,
  UsageObserved
} from "@converge/domain"
import { SessionStore } from "@converge/store"
import { MemoryFileSystem } from "@converge/testkit"
import { Transcript } from "@converge/transcript"
import { Reconciler } from "../src/Reconciler.js"
import { RunnerConfig } from "../src/RunnerConfig.js"
import { SESSIONS_DIR } from "./harness.js"

// Only what the Reconciler needs: a memory store, and transcripts on the in-memory file system.
const reconcilerLayer = Reconciler.Default.pipe(
  Layer.provideMerge(SessionStore.layerMemory),
  Layer.provide(Transcript.layer({ sessionsDir: SESSIONS_DIR })),
  Layer.provide(Layer.merge(MemoryFileSystem.layerWith({ files: {} }), Path.layer)),
  Layer.provide(RunnerConfig.layer({ sessionsDir: SESSIONS_DIR }))
)

const Version = fc.constantFrom("s-one", "s-two")
const At = fc.integer({ min: 0, max: 50 })
const Seq = fc.integer({ min: 0, max: 40 })

const Event = fc.oneof(
  fc.record({
    _tag: fc.constant("usage" as const),
    sessionId: Version,
    at: At,
    asOfSeq: Seq,
    n: fc.nat(500)
  }),
  fc.record({
    _tag: fc.constant("finished" as const),
    sessionId: Version,
    at: At,
    seq: Seq,
    outcome: fc.constantFrom("completed" as const, "timed_out" as const, "failed" as const)
  }),
  fc.record({
    _tag: fc.constant("compacted" as const),
    sessionId: Version,
    at: At,
    seq: Seq,
    ordinal: fc.nat(6)
  }),
  fc.record({ _tag: fc.constant("reset" as const), at: At })
)
type Event = typeof Event extends fc.Arbitrary<infer A> ? A : never

const toEvents = (events: ReadonlyArray<Event>, sessionKey: string): Array<LifecycleEvent> => {
  // Resets alternate the version (generation 2 → s-two, 3 → s-one …).
  let generation = 1
  return events.map((e): LifecycleEvent => {
    const base = { sessionKey, generation: 1 }
    switch (e._tag) {
      case "usage":
        return new UsageObserved({
          ...base,
          sessionId: e.sessionId,
          at: e.at,
          runId: `r${e.at}`,
          input: e.n,
          output: 7,
          context: e.n + 7,
          asOfSeq: e.asOfSeq
        })
      case "finished":
        return new TurnFinished({
          ...base,
          sessionId: e.sessionId,
          at: e.at,
          runId: `r${e.at}`,
          outcome: e.outcome,
          seq: e.seq
        })
      case "compacted":
        break
      case "reset": {
        generation++
        return new SessionReset({
          sessionKey,
          sessionId: generation % 2 === 0 ? "s-two" : "s-one",
          generation,
          at: e.at,
          previousSessionId: generation % 2 === 0 ? "s-one" : "s-two"
        })
      }
    }
    return new CompactionCompleted({
      ...base,
      sessionId: e.sessionId,
      at: e.at,
      compactionId: `c${e.ordinal}`,
      ordinal: e.ordinal,
      seq: e.seq,
      tokensBefore: 900,
      tokensAfter: 100 + e.ordinal
    })
  })
}

// One store for every run: each run uses keys of its own, one applied one event at a time,
// the other with applyAll (building a store per run made the test slow on a loaded machine).
const runtime = ManagedRuntime.make(reconcilerLayer.pipe(Layer.provideMerge(TestContext.TestContext)))
afterAll(() => runtime.dispose())
let run = 0

const finalEntry = (events: (key: string) => ReadonlyArray<LifecycleEvent>, key: string, joined: boolean) =>
  Effect.gen(function* () {
    const reconciler = yield* Reconciler
    const store = yield* SessionStore
    yield* reconciler.create(key, "s-one")
    if (joined) yield* reconciler.applyAll(events(key))
    else for (const event of events(key)) yield* reconciler.apply(event)
    return Option.getOrUndefined(yield* store.get(key))
  })

it.effect(
  "applyAll leaves the same entry as applying the events one at a time",
  () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(fc.array(Event, { maxLength: 12 }), async (drawn) => {
          run++
          const events = (key: string) => toEvents(drawn, key)
          const one = await runtime.runPromise(finalEntry(events, `one:${run}`, false))
          const all = await runtime.runPromise(finalEntry(events, `all:${run}`, true))
          expect(all).toEqual(one)
        }),
        { numRuns: 200 }
      )
    ),
  30_000
)
