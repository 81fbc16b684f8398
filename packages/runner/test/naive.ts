/**
 * The naive variants of SCENARIOS.md, kept so each scenario proves something: run on
 * them, a scenario must fail.
 */
import { FileSystem } from "@effect/platform"
import { Clock, Deferred, type Duration, Effect, Layer, Option, Stream } from "effect"
import {
  CompactionCompleted,
  type LifecycleEvent,
  makeCompactionId,
  type SessionEntry,
  sessionIdProblem,
  SessionNotFound,
  SessionUnavailable
} from "@converge/domain"
import { SessionStore } from "@converge/store"
import { Transcript } from "@converge/transcript"
import {
  type CompactionFailure,
  type CompactionHandle,
  CompactionSupervisor
} from "../src/CompactionSupervisor.js"
import { type CompactionOutcome, Compactor } from "../src/Compactor.js"
import { Reconciler, refOf } from "../src/Reconciler.js"
import { Runner } from "../src/Runner.js"
import type { Variant } from "./harness.js"

const versionOf = (entry: SessionEntry) => ({
  sessionId: entry.sessionId,
  generation: entry.generation ?? 0,
  sessionStartedAt: entry.sessionStartedAt ?? 0
})

/** Counts "current + 1", sets snapshots blindly, trusts arrival order. */
export const naiveReconciler: Variant = {
  name: "naive reconciler",
  reconciler: Layer.effect(
    Reconciler,
    Effect.gen(function* () {
      const real = yield* Reconciler
      const store = yield* SessionStore
      const transcript = yield* Transcript
      // Whatever arrives last is taken as the newest measurement.
      const newest = (entry: SessionEntry) => (entry.tokensAsOfSeq ?? 0) + 1
      const apply = (event: LifecycleEvent): Effect.Effect<void> =>
        Effect.gen(function* () {
          const entry = Option.getOrUndefined(yield* store.get(event.sessionKey))
          if (entry === undefined) return
          if (event._tag === "CompactionCompleted") {
            const count = (entry.compactionCount ?? 0) + 1
            yield* store.merge(event.sessionKey, {
              ...versionOf(entry),
              compactionCount: count,
              lastCompaction: {
                compactionId: event.compactionId,
                ordinal: count,
                at: event.at,
                seq: event.seq
              },
              totalTokens: event.tokensAfter,
              tokensAsOfSeq: newest(entry)
            })
          } else if (event._tag === "UsageObserved") {
            yield* store.merge(event.sessionKey, {
              ...versionOf(entry),
              inputTokens: event.input,
              outputTokens: event.output,
              totalTokens: event.context,
              tokensAsOfSeq: newest(entry)
            })
          } else yield* real.apply(event)
        })
      // Each compaction entry it hears about adds one.
      const recover = (sessionKey?: string) =>
        Effect.gen(function* () {
          const entries = yield* store.list
          for (const [key, entry] of entries) {
            if (sessionKey !== undefined && key !== sessionKey) continue
            const fold = yield* transcript.fold(entry.sessionId as never).pipe(Effect.option)
            if (Option.isNone(fold)) continue
            yield* store.merge(key, {
              ...versionOf(entry),
              compactionCount: (entry.compactionCount ?? 0) + fold.value.compactionIndex
            })
          }
          return []
        })
      const applyAll = (events: ReadonlyArray<LifecycleEvent>) =>
        Effect.forEach(events, apply, { discard: true })
      return Reconciler.make({ ...real, apply, applyAll, recover })
    })
  ).pipe(Layer.provide(Reconciler.Default))
}

/** OpenClaw's narrow fix: `max(store, compactions of this run)`. */
export const narrowFix: Variant = {
  name: "narrow fix",
  reconciler: Layer.effect(
    Reconciler,
    Effect.gen(function* () {
      const real = yield* Reconciler
      const thisRun = new Map<string, number>()
      const apply = (event: LifecycleEvent): Effect.Effect<void> => {
        if (event._tag !== "CompactionCompleted") return real.apply(event)
        const n = (thisRun.get(event.sessionId) ?? 0) + 1
        thisRun.set(event.sessionId, n)
        return real.apply(new CompactionCompleted({ ...event, ordinal: n }))
      }
      return Reconciler.make({
        ...real,
        apply,
        applyAll: (events) => Effect.forEach(events, apply, { discard: true }),
        ordinalOf: (_key, sessionId) => Effect.succeed((thisRun.get(sessionId) ?? 0) + 1)
      })
    })
  ).pipe(Layer.provide(Reconciler.Default))
}

/** Compacts in the turn's own scope: no hard timeout, no joining, no failure events, no idempotency. */
export const naiveRunner: Variant = {
  name: "naive runner",
  supervisor: Layer.effect(
    CompactionSupervisor,
    Effect.gen(function* () {
      const compactor = yield* Compactor
      const handles = new Map<string, CompactionHandle>()
      const start: CompactionSupervisor["start"] = (session, reason, instructions) =>
        Effect.gen(function* () {
          const handle: CompactionHandle = {
            compactionId: makeCompactionId(),
            session,
            reason,
            startedAt: yield* Clock.currentTimeMillis,
            done: yield* Deferred.make<CompactionOutcome, CompactionFailure>(),
            span: yield* Effect.makeSpan("naive.compaction"),
            waiters: { count: 0, waited: false }
          }
          handles.set(session.sessionId, handle)
          // A child of the caller: it dies with the turn that started it.
          yield* Effect.fork(
            compactor
              .run(session, handle.compactionId, reason, instructions, (o) =>
                Deferred.succeed(handle.done, o)
              )
              .pipe(Effect.ensuring(Effect.sync(() => handles.delete(session.sessionId))), Effect.ignore)
          )
          return { handle, joined: false }
        })
      return CompactionSupervisor.make({
        start,
        await: (handle, bound) => Deferred.await(handle.done).pipe(Effect.exit, Effect.timeoutOption(bound)),
        cancel: () => Effect.succeed(false),
        // The naive supervisor keeps no hand-off: a moved session's compaction runs on.
        release: () => Effect.void,
        inFlight: (sessionId) => Effect.sync(() => Option.fromNullable(handles.get(sessionId))),
        size: Effect.succeed(0),
        drain: (_bound: Duration.DurationInput) => Effect.void
      })
    })
  ),
  runner: (real) =>
    Layer.effect(
      Runner,
      Effect.map(Runner, (r) =>
        Runner.make({
          ...r,
          turn: (key, message, options = {}) =>
            r.turn(key, message, { ...options, idempotencyKey: undefined })
        })
      )
    ).pipe(Layer.provide(real))
}

/** Trusts `sessions.json` as it finds it (no recovery) and overwrites it on every change. */
export const naiveStore: Variant = {
  name: "naive store",
  store: ({ sessionsDir }) =>
    Layer.effect(
      SessionStore,
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        const file = `${sessionsDir}/sessions.json`
        const entries = new Map<string, SessionEntry>()
        const text = yield* fs.readFileString(file).pipe(Effect.orElseSucceed(() => ""))
        try {
          for (const [k, v] of Object.entries(JSON.parse(text) as Record<string, SessionEntry>))
            entries.set(k, v)
        } catch {
          // unreadable: start empty, and overwrite it at the next change
        }
        const write = fs
          .makeDirectory(sessionsDir, { recursive: true })
          .pipe(
            Effect.zipRight(fs.writeFileString(file, JSON.stringify(Object.fromEntries(entries), null, 2))),
            Effect.orDie
          )
        return SessionStore.make({
          get: (key) => Effect.sync(() => Option.fromNullable(entries.get(key))),
          list: Effect.sync(() => [...entries.entries()]),
          refresh: () => Effect.void,
          merge: (key, patch) =>
            Effect.gen(function* () {
              const next = { ...entries.get(key), ...patch } as SessionEntry
              entries.set(key, next)
              yield* write
              return next
            }),
          flush: write,
          changes: Stream.empty,
          corrupt: Effect.succeed(Option.none()),
          unreadable: Effect.succeed(new Map()),
          stats: Effect.succeed({ merges: 0, flushes: 0, writes: 0, durable: 0 } as never)
        })
      })
    ),
  reconciler: Layer.effect(
    Reconciler,
    Effect.gen(function* () {
      const real = yield* Reconciler
      const store = yield* SessionStore
      const session = (key: string) =>
        Effect.gen(function* () {
          const entry = yield* store.get(key)
          if (Option.isNone(entry)) return yield* Effect.fail(SessionNotFound.of(key))
          const problem = sessionIdProblem(entry.value.sessionId)
          if (problem !== undefined)
            return yield* Effect.fail(new SessionUnavailable({ sessionKey: key, message: problem }))
          return { ...refOf(key, entry.value), entry: entry.value }
        })
      return Reconciler.make({
        ...real,
        recover: () => Effect.succeed([]),
        ensureRecovered: () => Effect.void,
        session
      })
    })
  ).pipe(Layer.provide(Reconciler.Default))
}

/** Which naive variant each scenario must fail on (SCENARIOS.md). */
export const naiveFor: Record<string, Variant> = {
  S1: naiveRunner,
  S2: narrowFix,
  S3: narrowFix,
  S4: naiveReconciler,
  S5: naiveReconciler,
  S6: naiveRunner,
  S7: naiveRunner,
  S8: naiveReconciler,
  S9: naiveReconciler,
  S10: naiveStore,
  S11: naiveReconciler,
  S12: naiveRunner,
  S13: naiveStore,
  S14: naiveStore,
  S15: naiveRunner,
  S16: naiveRunner,
  S17: narrowFix,
  S18: naiveReconciler,
  S19: naiveRunner
}
