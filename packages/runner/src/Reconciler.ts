/**
 * The one path from events and transcripts to the owned fields of `SessionStore`.
 * `apply` is called by whoever produces an event, before it is published; it is
 * idempotent, so replays and recovery may call it again. `recover` folds transcripts
 * into the store and publishes nothing.
 */
import { Clock, Effect, Option } from "effect"
import {
  type LifecycleEvent,
  type SessionEntry,
  sessionIdProblem,
  SessionNotFound,
  SessionUnavailable,
  StorageUnavailable
} from "@converge/domain"
import { mergeEntries, type SessionPatch, SessionStore } from "@converge/store"
import { type Fold, Transcript } from "@converge/transcript"
import { RunnerConfig } from "./RunnerConfig.js"

/** The version of a session: what a reset changes. */
export interface SessionRef {
  readonly sessionKey: string
  readonly sessionId: string
  readonly generation: number
  readonly sessionStartedAt: number
}

/** What recovery found for one session. */
export interface RecoveryReport {
  readonly sessionKey: string
  readonly sessionId: string
  readonly before: number
  readonly after: number
  readonly problems: ReadonlyArray<string>
  readonly adopted: boolean
}

/** The version fields of an entry, as the store compares them (absent = 0). */
export const refOf = (sessionKey: string, entry: SessionEntry): SessionRef => ({
  sessionKey,
  sessionId: entry.sessionId,
  generation: entry.generation ?? 0,
  sessionStartedAt: entry.sessionStartedAt ?? 0
})

const versionPatch = (ref: SessionRef) => ({
  sessionId: ref.sessionId,
  generation: ref.generation,
  sessionStartedAt: ref.sessionStartedAt
})

/** The owned fields a transcript's fold proves: count, last compaction, token snapshot. */
const foldedFields = (f: Fold, base: number): Record<string, unknown> => {
  const fields: Record<string, unknown> = {}
  if (f.compactionIndex > 0) fields.compactionCount = base + f.compactionIndex
  const c = f.lastCompaction
  if (c !== undefined) {
    fields.lastCompaction = {
      compactionId: c.id,
      ordinal: base + c.index,
      at: c.at,
      seq: c.seq,
      ...(c.tokensBefore !== undefined ? { tokensBefore: c.tokensBefore } : {}),
      ...(c.tokensAfter !== undefined ? { tokensAfter: c.tokensAfter } : {})
    }
  }
  if (f.snapshot !== undefined) {
    fields.totalTokens = f.snapshot.context
    if (f.snapshot.input !== undefined) fields.inputTokens = f.snapshot.input
    if (f.snapshot.output !== undefined) fields.outputTokens = f.snapshot.output
    fields.tokensAsOfSeq = f.snapshot.asOfSeq
  }
  return fields
}

export class Reconciler extends Effect.Service<Reconciler>()("converge/Reconciler", {
  scoped: Effect.gen(function* () {
    const store = yield* SessionStore
    const transcript = yield* Transcript
    const config = yield* RunnerConfig
    // Keys recovered in this process: only ever added to, so one mutable set (no copy per key).
    const recovered = new Set<string>()

    /** The entry of `key` when it still belongs to `sessionId`; stale events find none. */
    const current = (key: string, sessionId: string) =>
      store.get(key).pipe(Effect.map(Option.filter((entry) => entry.sessionId === sessionId)))

    /**
     * The change an event of the session's current version makes to its entry; none for
     * events that change nothing. A reset is not one of them: it makes the version.
     */
    const patchOf = (event: LifecycleEvent, entry: SessionEntry): SessionPatch | undefined => {
      // The version fields first, then the event's; written out, not spread (see Runner.ts).
      const sessionId = entry.sessionId
      const generation = entry.generation ?? 0
      const sessionStartedAt = entry.sessionStartedAt ?? 0
      switch (event._tag) {
        case "CompactionCompleted":
          return {
            sessionId,
            generation,
            sessionStartedAt,
            compactionCount: event.ordinal,
            lastCompaction: {
              compactionId: event.compactionId,
              ordinal: event.ordinal,
              at: event.at,
              seq: event.seq,
              tokensBefore: event.tokensBefore,
              tokensAfter: event.tokensAfter
            },
            totalTokens: event.tokensAfter,
            tokensAsOfSeq: event.seq
          }
        case "UsageObserved":
          return {
            sessionId,
            generation,
            sessionStartedAt,
            inputTokens: event.input,
            outputTokens: event.output,
            totalTokens: event.context,
            tokensAsOfSeq: event.asOfSeq
          }
        case "TurnFinished":
          return {
            sessionId,
            generation,
            sessionStartedAt,
            lastRun: { runId: event.runId, outcome: event.outcome, at: event.at, seq: event.seq },
            updatedAt: event.at
          }
        default:
          return undefined
      }
    }

    /** Applies an event's state change to the store (idempotent; order-free). */
    const apply = (event: LifecycleEvent): Effect.Effect<void> => applyAll([event])

    /** Joins the changes of events of one session version into one merge. */
    const applyVersion = (events: ReadonlyArray<LifecycleEvent>): Effect.Effect<void> =>
      Effect.gen(function* () {
        const { sessionKey, sessionId } = events[0]!
        // Stale events (of an earlier version) find no entry and change nothing.
        const entry = yield* current(sessionKey, sessionId)
        if (Option.isNone(entry)) return
        let patch: SessionPatch | undefined
        for (const event of events) {
          const next = patchOf(event, entry.value)
          if (next !== undefined) patch = patch === undefined ? next : mergeEntries(patch, next)
        }
        if (patch !== undefined) yield* store.merge(sessionKey, patch)
      })

    /**
     * Applies events' state changes to the store, in order. A run of events of one session
     * version is one merge: merges are joins, so that is the same as one merge per event.
     */
    const applyAll = (events: ReadonlyArray<LifecycleEvent>): Effect.Effect<void> =>
      Effect.gen(function* () {
        let i = 0
        while (i < events.length) {
          const event = events[i]!
          if (event._tag === "SessionReset") {
            yield* store.merge(event.sessionKey, {
              sessionId: event.sessionId,
              generation: event.generation,
              sessionStartedAt: event.at,
              ownedFor: event.sessionId,
              compactionCount: 0,
              compactionBase: 0,
              updatedAt: event.at
            })
            i++
            continue
          }
          let end = i + 1
          while (end < events.length) {
            const next = events[end]!
            if (next._tag === "SessionReset") break
            if (next.sessionKey !== event.sessionKey || next.sessionId !== event.sessionId) break
            end++
          }
          yield* applyVersion(events.slice(i, end))
          i = end
        }
      })

    /** The ordinal of the compaction entry at `index` of the transcript of `sessionId`. */
    const ordinalOf = (key: string, sessionId: string, index: number): Effect.Effect<number> =>
      current(key, sessionId).pipe(
        Effect.map((entry) => (Option.isSome(entry) ? (entry.value.compactionBase ?? 0) : 0) + index)
      )

    /** Creates the session of `key` (generation 1, a new sessionId) unless it exists. */
    const create = (key: string, sessionId: string): Effect.Effect<SessionEntry> =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const entry = yield* store.merge(key, {
          sessionId,
          generation: 1,
          sessionStartedAt: now,
          ownedFor: sessionId,
          compactionCount: 0,
          compactionBase: 0,
          updatedAt: now,
          contextTokens: config.contextWindow
        })
        // A session this process just created has no transcript yet: nothing to recover.
        if (entry.sessionId === sessionId) recovered.add(key)
        return entry
      })

    /** Folds the transcript of one stored session into the store. */
    const recoverEntry = (key: string, entry: SessionEntry): Effect.Effect<RecoveryReport> =>
      Effect.gen(function* () {
        const before = entry.compactionCount ?? 0
        const problems: Array<string> = []
        const idProblem = sessionIdProblem(entry.sessionId)
        if (idProblem !== undefined) {
          return {
            sessionKey: key,
            sessionId: entry.sessionId,
            before,
            after: before,
            problems: [idProblem],
            adopted: false
          }
        }
        const exists = yield* transcript.exists(entry.sessionId).pipe(Effect.orElseSucceed(() => false))
        const fold = exists ? yield* transcript.fold(entry.sessionId).pipe(Effect.option) : Option.none()
        if (!exists) problems.push(`transcript ${entry.sessionId}.jsonl is missing`)
        const fileCount = Option.isSome(fold) ? fold.value.compactionIndex : 0
        if (Option.isSome(fold)) for (const p of fold.value.problems) problems.push(p.message)
        else if (exists) problems.push(`transcript ${entry.sessionId}.jsonl could not be read`)
        const adopted = entry.ownedFor !== entry.sessionId
        const base = adopted ? Math.max(0, before - fileCount) : (entry.compactionBase ?? 0)
        const patch: Record<string, unknown> = {
          ...versionPatch(refOf(key, entry)),
          ownedFor: entry.sessionId,
          compactionBase: base
        }
        if (Option.isSome(fold)) Object.assign(patch, foldedFields(fold.value, base))
        const merged = yield* store.merge(key, patch as SessionEntry)
        return {
          sessionKey: key,
          sessionId: entry.sessionId,
          before,
          after: merged.compactionCount ?? 0,
          problems,
          adopted
        }
      })

    /** Adopts transcripts no entry references, under their header's key or `recovered:<id>`. */
    const adoptOrphans = (
      orphans: ReadonlyArray<string>,
      folded: Effect.Effect<void>
    ): Effect.Effect<Array<RecoveryReport>> =>
      Effect.gen(function* () {
        const unreadable = yield* store.unreadable
        const reports: Array<RecoveryReport> = []
        for (const id of orphans) {
          const fold = yield* transcript.fold(id).pipe(Effect.option, Effect.zipLeft(folded))
          if (Option.isNone(fold)) continue
          const f = fold.value
          const key = f.header.sessionKey ?? `recovered:${id}`
          // A key whose stored value is not an entry keeps that value: its transcript is not adopted over it.
          if (unreadable.has(key)) continue
          const existing = yield* store.get(key)
          if (Option.isSome(existing)) continue
          const patch: Record<string, unknown> = {
            sessionId: id,
            generation: 1,
            sessionStartedAt: f.header.startedAt,
            ownedFor: id,
            compactionBase: 0,
            compactionCount: f.compactionIndex,
            updatedAt: f.lastActivityAt,
            ...foldedFields(f, 0)
          }
          yield* store.merge(key, patch as SessionEntry)
          recovered.add(key)
          reports.push({
            sessionKey: key,
            sessionId: id,
            before: 0,
            after: f.compactionIndex,
            problems: f.problems.map((p) => p.message),
            adopted: true
          })
        }
        return reports
      })

    /**
     * Folds transcripts into the store: one session, or all (adopting orphans too), telling
     * `onProgress` how many of how many transcripts are folded as it goes.
     */
    const recover = (
      sessionKey?: string,
      options: { readonly onProgress?: (folded: number, total: number) => Effect.Effect<void> } = {}
    ): Effect.Effect<ReadonlyArray<RecoveryReport>> =>
      Effect.gen(function* () {
        if (sessionKey !== undefined) {
          const entry = yield* store.get(sessionKey)
          if (Option.isNone(entry)) return []
          recovered.add(sessionKey)
          return [yield* recoverEntry(sessionKey, entry.value)]
        }
        const entries = yield* store.list
        const reports: Array<RecoveryReport> = []
        const referenced = new Set<string>()
        for (const [, entry] of entries) {
          referenced.add(entry.sessionId)
          if (typeof entry.ownedFor === "string") referenced.add(entry.ownedFor)
        }
        const ids = yield* transcript.list.pipe(Effect.orElseSucceed(() => []))
        const orphans = ids.filter((id) => !referenced.has(id) && sessionIdProblem(id) === undefined)
        const total = entries.length + orphans.length
        let done = 0
        const folded =
          options.onProgress === undefined
            ? Effect.void
            : Effect.suspend(() => options.onProgress!(++done, total))
        for (const [key, entry] of entries) {
          reports.push(yield* recoverEntry(key, entry))
          recovered.add(key)
          yield* folded
        }
        reports.push(...(yield* adoptOrphans(orphans, folded)))
        return reports
      })

    /** Recovers `key` once in this process, before anyone reads it. */
    const ensureRecovered = (key: string): Effect.Effect<void> =>
      Effect.suspend(() => (recovered.has(key) ? Effect.void : Effect.asVoid(recover(key))))

    /**
     * Forgets that `key` was recovered in this process: the next read folds its transcript
     * again. For a session another process worked on meanwhile (its cluster shard moved away
     * and back): the transcript, not what this process last saw, says what happened.
     */
    const forget = (key: string): Effect.Effect<void> =>
      Effect.sync(() => {
        recovered.delete(key)
      })

    /**
     * The stored entry of `key`, recovered first; none when it is missing (no error is built:
     * a turn's first use of a key takes this path); fails when it cannot be served.
     */
    const findSession = (
      key: string
    ): Effect.Effect<Option.Option<SessionRef & { entry: SessionEntry }>, SessionUnavailable> =>
      Effect.gen(function* () {
        yield* ensureRecovered(key)
        const entry = yield* store.get(key)
        if (Option.isNone(entry)) {
          // A value of sessions.json that is not an entry is kept as it is: never replaced by a new session.
          const unreadable = (yield* store.unreadable).get(key)
          if (unreadable === undefined) return Option.none()
          return yield* Effect.fail(
            new SessionUnavailable({
              sessionKey: key,
              message: `session ${key} cannot be served: ${unreadable}`
            })
          )
        }
        const problem = sessionIdProblem(entry.value.sessionId)
        if (problem !== undefined) {
          return yield* Effect.fail(
            new SessionUnavailable({
              sessionKey: key,
              message: `session ${key} cannot be served: ${problem}`
            })
          )
        }
        const e = entry.value
        return Option.some({
          sessionKey: key,
          sessionId: e.sessionId,
          generation: e.generation ?? 0,
          sessionStartedAt: e.sessionStartedAt ?? 0,
          entry: e
        })
      })

    /** The stored entry of `key`, recovered first; fails when it is missing or cannot be served. */
    const session = (
      key: string
    ): Effect.Effect<SessionRef & { entry: SessionEntry }, SessionNotFound | SessionUnavailable> =>
      Effect.flatMap(findSession(key), (found) =>
        Option.isSome(found) ? Effect.succeed(found.value) : Effect.fail(SessionNotFound.of(key))
      )

    /**
     * Reads the stored entry of `key` again before a turn works on it: on a database other
     * gateways changed it meanwhile (a store only this process writes answers at once). A store
     * that cannot be read answers `StorageUnavailable`: nothing was done yet, retry.
     */
    const refresh = (key: string): Effect.Effect<void, StorageUnavailable> =>
      store
        .refresh(key)
        .pipe(Effect.mapError((e) => new StorageUnavailable({ message: e.message, retryAfterMs: 1000 })))

    return {
      apply,
      applyAll,
      ordinalOf,
      create,
      recover,
      ensureRecovered,
      forget,
      session,
      findSession,
      refresh
    } as const
  })
}) {}
