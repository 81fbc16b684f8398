/**
 * `SessionStore`: every session entry in a `Ref`, changed only by merges (DESIGN §2.4), and
 * written behind to a backend — OpenClaw's `sessions.json` by default — by a flusher that
 * lives in the layer's scope.
 */
import type { FileSystem, Path } from "@effect/platform"
import { Metrics, type SessionEntry, type StorageError, type StoreCorrupt, Tracing } from "@converge/domain"
import {
  Clock,
  Duration,
  Effect,
  Exit,
  Fiber,
  HashMap,
  Layer,
  Metric,
  Option,
  PubSub,
  Queue,
  Ref,
  type Scope,
  Stream
} from "effect"
import { type Backend, memoryBackend } from "./internal/backend.js"
import { makeFileBackend } from "./internal/fileBackend.js"
import { jsonEqual, mergeEntries, mergeFileWithMemory, type SessionPatch } from "./merge.js"

/** One entry as a merge or a flush left it. */
export interface SessionChange {
  readonly key: string
  readonly entry: SessionEntry
}

/** Counters of a store (tests, benchmarks). */
export interface StoreStats {
  /** Merges that changed an entry, since the store started. */
  readonly merges: number
  /** Of those, the merges a completed flush has made durable. */
  readonly durableMerges: number
  /** Keys changed since the last completed flush. */
  readonly dirtyKeys: number
  /** Completed flushes that had something to flush. */
  readonly flushes: number
  /** Of those, the ones that wrote the file. */
  readonly writes: number
}

/** Options of the JSON file backend (`layerFile`). */
export interface FileStoreOptions {
  /** The directory of `sessions.json` (created if missing). */
  readonly sessionsDir: string
  /** A flush starts at most this long after the first unflushed merge (default 50). */
  readonly flushIntervalMs?: number
  /** How long a flush waits for `sessions.json.lock` before it fails (default 10 000). */
  readonly lockTimeoutMs?: number
  /** A lock older than this is reclaimed even if its owner still runs (default 30 000). */
  readonly lockStaleMs?: number
}

/** The defaults of `FileStoreOptions`. */
export const fileStoreDefaults = { flushIntervalMs: 50, lockTimeoutMs: 10_000, lockStaleMs: 30_000 } as const

interface State {
  readonly entries: HashMap.HashMap<string, SessionEntry>
  /** Keys changed since the last completed flush → the seq of their latest merge. */
  readonly dirty: HashMap.HashMap<string, number>
  /** Merges that changed an entry, so far. */
  readonly seq: number
  /** The seq up to which a completed flush covered the merges. */
  readonly durable: number
  /** When the first merge that no flush has taken yet happened. */
  readonly unflushedSince: Option.Option<number>
  /** `unflushedSince` of the flush in progress, given back if that flush fails. */
  readonly inFlightSince: Option.Option<number>
}

const earliest = (a: Option.Option<number>, b: Option.Option<number>): Option.Option<number> =>
  Option.isNone(a) ? b : Option.isNone(b) ? a : Option.some(Math.min(a.value, b.value))

/** The patch with `ownedFor` = its `sessionId` when it has none: Converge owns what it merges. */
const withOwner = (patch: SessionPatch): SessionEntry => {
  if (patch.ownedFor !== undefined) return patch
  // Built key by key, not spread: entries then share object shapes and merges stay fast.
  const own: Record<string, unknown> = {}
  for (const key of Object.keys(patch)) own[key] = patch[key]
  return Object.assign(own, { sessionId: patch.sessionId, ownedFor: patch.sessionId })
}

/** Flush latency in ms, fed with the `Duration`s `Metric.trackDuration` measures. */
const flushDurationMs = Metrics.storeFlushDuration.pipe(Metric.mapInput(Duration.toMillis))

const make = (backend: Backend): Effect.Effect<SessionStoreShape, StorageError, Scope.Scope> =>
  Effect.gen(function* () {
    const loaded = yield* backend.load
    const now = yield* Clock.currentTimeMillis
    const state = yield* Ref.make<State>({
      entries: HashMap.fromIterable(loaded.entries),
      dirty: HashMap.fromIterable(loaded.unsaved.map((key) => [key, 0] as const)),
      seq: 0,
      durable: 0,
      unflushedSince: loaded.unsaved.length > 0 ? Option.some(now) : Option.none(),
      inFlightSince: Option.none()
    })
    const corrupt = yield* Ref.make(loaded.corrupt)
    const counters = yield* Ref.make({ flushes: 0, writes: 0 })
    const changes = yield* PubSub.unbounded<SessionChange>()
    // Set when the store goes from clean to dirty; the flusher waits on it, so it holds no timer while clean.
    const wake = yield* Queue.dropping<void>(1)
    const flushing = yield* Effect.makeSemaphore(1)

    const merge = (key: string, patch: SessionPatch): Effect.Effect<SessionEntry> =>
      Effect.flatMap(Clock.currentTimeMillis, (at) =>
        Effect.flatMap(
          Ref.modify(state, (s) => {
            const own = withOwner(patch)
            const current = HashMap.get(s.entries, key)
            const next = Option.isSome(current) ? mergeEntries(current.value, own) : mergeEntries(own, own)
            if (Option.isSome(current) && jsonEqual(current.value, next))
              return [{ entry: current.value, wake: false }, s]
            const seq = s.seq + 1
            // Published in the same step as the update, so subscribers see changes in the Ref's order.
            changes.unsafeOffer({ key, entry: next })
            return [
              { entry: next, wake: HashMap.isEmpty(s.dirty) },
              // Written out, not `{ ...s, … }`: V8 11 (Node 20) builds a spread followed by
              // more fields on a slow path, and a merge is the store's hot path.
              {
                entries: HashMap.set(s.entries, key, next),
                dirty: HashMap.set(s.dirty, key, seq),
                seq,
                durable: s.durable,
                unflushedSince: Option.orElse(s.unflushedSince, () => Option.some(at)),
                inFlightSince: s.inFlightSince
              }
            ]
          }),
          (r) => (r.wake ? Effect.as(Queue.offer(wake, undefined), r.entry) : Effect.succeed(r.entry))
        )
      )

    /**
     * Joins the stored entry of `key` into memory: the owned fields by the lattice; the others
     * take the stored value unless this process changed them and has not written them yet.
     */
    const refresh = (
      reload: NonNullable<Backend["reload"]>,
      key: string
    ): Effect.Effect<void, StorageError> =>
      Effect.flatMap(reload(key), (stored) =>
        Option.isNone(stored)
          ? Effect.void
          : Ref.update(state, (s): State => {
              const mine = HashMap.get(s.entries, key)
              const dirty = HashMap.has(s.dirty, key)
              const next = Option.isNone(mine)
                ? stored.value
                : mergeFileWithMemory(stored.value, mine.value, dirty ? undefined : mine.value)
              if (Option.isSome(mine) && (mine.value === next || jsonEqual(mine.value, next))) return s
              changes.unsafeOffer({ key, entry: next })
              return { ...s, entries: HashMap.set(s.entries, key, next) }
            })
      )

    /** Takes what is dirty, has the backend merge and store it, then folds what it found back into memory. */
    const flushOnce: Effect.Effect<void, StorageError> = flushing.withPermits(1)(
      Effect.gen(function* () {
        const snapshot = yield* Ref.modify(state, (s): [Option.Option<State>, State] =>
          HashMap.isEmpty(s.dirty)
            ? [Option.none(), s]
            : [Option.some(s), { ...s, inFlightSince: s.unflushedSince, unflushedSince: Option.none() }]
        )
        if (Option.isNone(snapshot)) return
        const snap = snapshot.value
        const persisted = yield* backend.persist(snap.entries, snap.dirty).pipe(
          Metric.trackDuration(flushDurationMs),
          Tracing.withSpan("converge.store.flush"),
          Effect.onError(() =>
            Ref.update(state, (s) => ({
              ...s,
              unflushedSince: earliest(s.inFlightSince, s.unflushedSince),
              inFlightSince: Option.none()
            }))
          )
        )
        yield* Ref.update(state, (s): State => {
          const found: Array<SessionChange> = []
          let entries = s.entries
          if (Option.isSome(persisted.stored)) {
            const stored = persisted.stored.value
            for (const [key, entry] of stored) {
              const mine = HashMap.get(s.entries, key)
              const before = HashMap.get(snap.entries, key)
              let next: SessionEntry
              if (Option.isNone(mine)) next = entry
              else if (Option.isSome(before) && mine.value === before.value) next = entry
              else next = mergeFileWithMemory(entry, mine.value, Option.getOrUndefined(before))
              if (Option.isSome(mine) && (mine.value === next || jsonEqual(mine.value, next))) continue
              entries = HashMap.set(entries, key, next)
              found.push({ key, entry: next })
            }
            for (const [key, mine] of persisted.complete === false ? [] : s.entries) {
              if (HashMap.has(stored, key)) continue
              const before = HashMap.get(snap.entries, key)
              // Removed by another writer and untouched here since the snapshot.
              if (Option.isSome(before) && before.value === mine) entries = HashMap.remove(entries, key)
            }
          }
          const dirty = HashMap.filter(s.dirty, (seq) => seq > snap.seq)
          for (const change of found) changes.unsafeOffer(change)
          return {
            ...s,
            entries,
            dirty,
            durable: snap.seq,
            inFlightSince: Option.none(),
            unflushedSince: HashMap.isEmpty(dirty) ? Option.none() : s.unflushedSince
          }
        })
        yield* Ref.update(counters, (c) => ({
          flushes: c.flushes + 1,
          writes: c.writes + (persisted.wrote ? 1 : 0)
        }))
        if (Option.isSome(persisted.corrupt)) yield* Ref.set(corrupt, persisted.corrupt)
      })
    )

    yield* Effect.addFinalizer(() => PubSub.shutdown(changes))
    yield* Effect.addFinalizer(() =>
      flushOnce.pipe(
        Effect.catchAllCause((cause) => Effect.logError("final flush of the session store failed", cause))
      )
    )

    if (Option.isSome(backend.flushIntervalMs)) {
      const interval = backend.flushIntervalMs.value
      const flusher = Effect.gen(function* () {
        while (true) {
          yield* Queue.take(wake)
          let failures = 0
          while (true) {
            const s = yield* Ref.get(state)
            if (HashMap.isEmpty(s.dirty)) break
            const t = yield* Clock.currentTimeMillis
            const wait =
              failures === 0
                ? Option.getOrElse(s.unflushedSince, () => t) + interval - t
                : Math.min(Math.max(interval, 10) * 2 ** failures, 5_000)
            if (wait > 0) yield* Effect.sleep(wait)
            // In a child fiber, so a flush that is interrupted or dies leaves the flusher running.
            const exit = yield* Effect.fork(flushOnce).pipe(Effect.flatMap(Fiber.await))
            if (Exit.isSuccess(exit)) failures = 0
            else {
              failures++
              yield* Effect.logWarning("flush of the session store failed; retrying", exit.cause)
            }
          }
        }
      })
      yield* Effect.forkScoped(flusher)
      if (loaded.unsaved.length > 0) yield* Queue.offer(wake, undefined)
    }

    return {
      get: (key: string) => Effect.map(Ref.get(state), (s) => HashMap.get(s.entries, key)),
      list: Effect.map(Ref.get(state), (s) =>
        [...s.entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, e]) => [k, e] as const)
      ),
      merge,
      refresh: (key: string) => (backend.reload === undefined ? Effect.void : refresh(backend.reload, key)),
      flush: flushOnce,
      changes: Stream.fromPubSub(changes),
      corrupt: Ref.get(corrupt),
      unreadable: backend.unreadable,
      stats: Effect.map(Effect.zip(Ref.get(state), Ref.get(counters)), ([s, c]) => ({
        merges: s.seq,
        durableMerges: s.durable,
        dirtyKeys: HashMap.size(s.dirty),
        flushes: c.flushes,
        writes: c.writes
      }))
    }
  })

/** What `SessionStore` offers. */
export interface SessionStoreShape {
  /** The entry of `key`, if any. */
  readonly get: (key: string) => Effect.Effect<Option.Option<SessionEntry>>
  /** Every entry, by key. */
  readonly list: Effect.Effect<ReadonlyArray<readonly [string, SessionEntry]>>
  /** Joins `patch` into the entry of `key` (one atomic `Ref.modify`) and returns the result. */
  readonly merge: (key: string, patch: SessionPatch) => Effect.Effect<SessionEntry>
  /**
   * Joins what the backend stores for `key` into memory, for a backend other live processes
   * write too (a database); nothing for the file and memory backends, whose process has it all.
   */
  readonly refresh: (key: string) => Effect.Effect<void, StorageError>
  /** Writes everything dirty now (merged with what is stored); nothing when nothing changed. */
  readonly flush: Effect.Effect<void, StorageError>
  /** Entries as merges and flushes change them (subscribe before the changes you want to see). */
  readonly changes: Stream.Stream<SessionChange>
  /** Set when `sessions.json` could not be read (it was moved aside). */
  readonly corrupt: Effect.Effect<Option.Option<StoreCorrupt>>
  /**
   * Keys whose value in `sessions.json` is not a session entry, and why: kept in the file as
   * they are, never merged into, and not served until someone fixes them.
   */
  readonly unreadable: Effect.Effect<ReadonlyMap<string, string>>
  /** Counters: merges, durable merges, flushes, writes. */
  readonly stats: Effect.Effect<StoreStats>
}

const resolve = (options: FileStoreOptions) => ({
  sessionsDir: options.sessionsDir,
  flushIntervalMs: options.flushIntervalMs ?? fileStoreDefaults.flushIntervalMs,
  lockTimeoutMs: options.lockTimeoutMs ?? fileStoreDefaults.lockTimeoutMs,
  lockStaleMs: options.lockStaleMs ?? fileStoreDefaults.lockStaleMs
})

/** The session store: entries in a `Ref`, merges only, written behind by a scoped flusher. */
export class SessionStore extends Effect.Service<SessionStore>()("converge/SessionStore", {
  scoped: Effect.orDie(make(memoryBackend))
}) {
  /** A store that keeps entries in memory only (tests). */
  static readonly layerMemory: Layer.Layer<SessionStore> = Layer.scoped(
    SessionStore,
    Effect.map(Effect.orDie(make(memoryBackend)), (shape) => SessionStore.make(shape))
  )

  /** A store over another place that keeps entries (a database: `@converge/postgres`). */
  static readonly layerBackend = <E, R>(
    backend: Effect.Effect<Backend, E, R>
  ): Layer.Layer<SessionStore, E | StorageError, Exclude<R, Scope.Scope>> =>
    Layer.scoped(
      SessionStore,
      backend.pipe(
        Effect.flatMap(make),
        Effect.map((shape) => SessionStore.make(shape))
      )
    )

  /** The embedded default: OpenClaw's `<sessionsDir>/sessions.json`, locked, merged on flush, written atomically. */
  static readonly layerFile = (
    options: FileStoreOptions
  ): Layer.Layer<SessionStore, StorageError, FileSystem.FileSystem | Path.Path> =>
    Layer.scoped(
      SessionStore,
      makeFileBackend(resolve(options)).pipe(
        Effect.flatMap(make),
        Effect.map((shape) => SessionStore.make(shape))
      )
    )
}
