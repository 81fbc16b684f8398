/**
 * `Transcript`: pi v3 JSONL transcripts at `<sessionsDir>/<sessionId>.jsonl`, appended under
 * a per-session lease and lock, read tolerantly, folded for recovery from where the last
 * fold stopped. docs/transcript.md describes the format, the lease and the append protocol.
 */
import {
  type CompactionEntry,
  Lru,
  Metrics,
  type SessionHeader,
  SessionId,
  SessionLeased,
  StorageError,
  type TranscriptEntry,
  Tracing
} from "@converge/domain"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import type { PlatformError } from "@effect/platform/Error"
import {
  Clock,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  FiberId,
  FiberMap,
  FiberSet,
  type Layer,
  Metric,
  Option,
  Schema,
  Scope
} from "effect"
import { type Context, contextOf, entriesSinceCut } from "./context.js"
import {
  copyFoldState,
  type Fold,
  type FoldState,
  finishFold,
  foldLine,
  foldText,
  initialFoldState,
  nextLine
} from "./fold.js"
import {
  isTranscriptEntry,
  type LineValue,
  type ParsedLine,
  type ParsedTranscript,
  type Problem,
  parseTranscript,
  type SeqEntry,
  torn
} from "./parse.js"
import { concat, decode, encode, fingerprint } from "./internal/bytes.js"
import { formatLeaseRecord, isProcessAlive, type LeaseRecord, parseLeaseRecord } from "./internal/lease.js"
import { decodeEntry, formatIndex, parseIndex, RESUME_INDEX, type Resume } from "./internal/resume.js"

/** Options of `Transcript.layer`. */
export interface TranscriptOptions {
  readonly sessionsDir: string
  /** A lease not refreshed for this long is stale and may be taken (default 10 000). */
  readonly leaseMs?: number
  /** A lease nobody used for this long (and nobody `hold`s) is released (default 3 × `leaseMs`). */
  readonly idleMs?: number
  /** The `cwd` written in new headers (default `process.cwd()`). */
  readonly cwd?: string
  /** Transcripts at least this long are kept in the resume index (default 64 KiB). */
  readonly resumeMinBytes?: number
  /** The resume index is written this long after it first changes (default 5 000), and on close. */
  readonly resumeFlushMs?: number
  /** Parsed transcripts kept in memory for building contexts, at most (default 1 000 sessions). */
  readonly cacheSessions?: number
  /** Their estimated memory, at most (default 16 MiB); see `PARSED_BYTES_PER_FILE_BYTE`. */
  readonly cacheBytes?: number
}

/** What the parsed-transcript cache holds right now. */
export interface CacheStats {
  readonly sessions: number
  /** Estimated memory of what is cached. */
  readonly bytes: number
  readonly evictions: number
  /** Leases held (each keeps the end of its file, and a parsed copy while cached). */
  readonly leases: number
}

/** In memory, a parsed transcript takes about this many bytes per byte of its file. */
export const PARSED_BYTES_PER_FILE_BYTE = 2

/**
 * An entry to append: a transcript entry without `parentId` and `timestamp`, which are
 * filled in (`parentId` = the file's last entry); `id` may be given.
 */
export interface NewEntry {
  readonly type: string
  readonly id?: string
  readonly [field: string]: unknown
}

/** Options of `append`. */
export interface AppendOptions {
  /** Written into the header when this append creates the file. */
  readonly sessionKey?: string
}

/** Where an appended entry landed. */
export interface Appended {
  readonly seq: number
  readonly id: string
}

/** What `build` returns: the compaction entry's own fields. */
export interface CompactionBuild {
  readonly summary: string
  readonly tokensBefore?: number
  readonly tokensAfter?: number
}

/** A compaction to append exactly once per `compactionId`. */
export interface CompactionRequest {
  readonly compactionId: string
  readonly firstKeptEntryId: string
  /** Runs inside the per-session append lock over the entries kept from the cut on; pure. */
  readonly build: (entriesSinceCut: ReadonlyArray<SeqEntry>) => CompactionBuild
}

/** The compaction entry of a `compactionId`: written by this call (`created`) or found there. */
export interface CompactionAppended {
  readonly seq: number
  /** Its position among all compaction entries of the file (1, 2, 3 …). */
  readonly index: number
  readonly created: boolean
  readonly entry: CompactionEntry
}

/** A whole transcript as read. */
export interface TranscriptRead {
  readonly header?: SessionHeader
  readonly entries: ReadonlyArray<SeqEntry>
  readonly problems: ReadonlyArray<Problem>
}

/** What the process knows of a transcript file: exact while it holds the lease. */
interface Tail {
  readonly fold: FoldState
  /** Bytes of complete lines: the next append starts here. */
  endOffset: number
  checkStart: number
  checkHash: number
  /** The file's length as last seen (more than `endOffset` while a torn line is there). */
  size: number
  torn: Problem | undefined
  missing: boolean
  ino: Option.Option<number>
  /** Bytes past `endOffset` are a failed append of ours: truncate them before the next. */
  dirty: boolean
  /**
   * The file parsed up to `endOffset`, kept while the lease is held (no one else writes):
   * appends extend it, so building a context does not re-read the whole file each turn.
   */
  parsed?:
    | {
        header: SessionHeader | undefined
        readonly lines: Array<ParsedLine>
        problems: ReadonlyArray<Problem>
        endOffset: number
      }
    | undefined
}

interface Lease {
  readonly acquiredAt: number
  lastRefreshAt: number
  /** When the file was last checked against `tail` (a stat): appends within `refreshEvery` of it trust the cache. */
  verifiedAt: number
  lastUsedAt: number
  holders: number
  tail: Tail | undefined
  file: FileSystem.File | undefined
  scope: Scope.CloseableScope | undefined
}

type Parsed = NonNullable<Tail["parsed"]>

interface Session {
  readonly sessionId: string
  readonly path: string
  readonly lockPath: string
  readonly lock: Effect.Semaphore
  lease: Lease | undefined
}

const EMPTY_HASH = fingerprint(new Uint8Array(0))

/** Where in its first period a session's lease is first refreshed: from 0.5 to 1, by its id. */
const refreshPhase = (sessionId: string): number => {
  let h = 2166136261
  for (let i = 0; i < sessionId.length; i++) h = Math.imul(h ^ sessionId.charCodeAt(i), 16777619)
  return 0.5 + ((h >>> 0) % 1000) / 2000
}

const isNotFound = (e: PlatformError): boolean => e._tag === "SystemError" && e.reason === "NotFound"
const isAlreadyExists = (e: PlatformError): boolean =>
  e._tag === "SystemError" && e.reason === "AlreadyExists"

const decodeSessionId = Schema.decodeUnknownEither(SessionId)

/** 16 random hex digits (pi uses 8; more keeps ids unique in very long transcripts). */
export const newEntryId = (): string => {
  const u = crypto.randomUUID()
  return u.slice(0, 8) + u.slice(9, 13) + u.slice(24, 28)
}

/** The full entry for `input`: `type`, `id`, `parentId`, `timestamp` first, then its fields. */
export const completeEntry = (input: NewEntry, parentId: string | null, iso: string): TranscriptEntry => {
  const entry: Record<string, unknown> = {
    type: input.type,
    id: input.id ?? newEntryId(),
    parentId,
    timestamp: iso
  }
  for (const [field, value] of Object.entries(input)) {
    if (!(field in entry) && value !== undefined) entry[field] = value
  }
  if (!isTranscriptEntry(entry)) {
    throw new TypeError(`not a transcript entry: ${JSON.stringify(entry).slice(0, 200)}`)
  }
  return entry
}

/** The compaction entry of `request`, built as `built`, after the entry `parentId`. */
export const compactionEntry = (
  request: CompactionRequest,
  built: CompactionBuild,
  parentId: string | null,
  now: number
): CompactionEntry => ({
  type: "compaction",
  id: newEntryId(),
  parentId,
  timestamp: new Date(now).toISOString(),
  summary: built.summary,
  firstKeptEntryId: request.firstKeptEntryId,
  ...(built.tokensBefore !== undefined ? { tokensBefore: built.tokensBefore } : {}),
  compactionId: request.compactionId,
  ...(built.tokensAfter !== undefined ? { tokensAfter: built.tokensAfter } : {})
})

/** The pi v3 header of a new transcript. */
export const sessionHeader = (
  sessionId: string,
  iso: string,
  cwd: string,
  sessionKey: string | undefined
): SessionHeader => ({
  type: "session",
  version: 3,
  id: sessionId,
  timestamp: iso,
  cwd,
  ...(sessionKey !== undefined ? { sessionKey } : {})
})

/** Append latency in ms, fed with the `Duration`s `Metric.trackDuration` measures. */
const appendDurationMs = Metrics.transcriptAppendDuration.pipe(Metric.mapInput(Duration.toMillis))

/** Every append is a span of its own and one sample of `converge_transcript_append_duration_ms`. */
export const timedAppend = <A, E, R>(name: string, sessionId: string, effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Metric.trackDuration(appendDurationMs),
    Tracing.withSpan(name, { attributes: { "session.id": sessionId } })
  )

const make = (options: TranscriptOptions) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = options.sessionsDir
    const leaseMs = options.leaseMs ?? 10_000
    const idleMs = options.idleMs ?? 3 * leaseMs
    const refreshEvery = Math.max(1, Math.floor(leaseMs / 3))
    const cwd = options.cwd ?? process.cwd()
    const resumeMinBytes = options.resumeMinBytes ?? 64 * 1024
    const owner = crypto.randomUUID()
    const sessions = new Map<string, Session>()
    const resumeFlushMs = options.resumeFlushMs ?? 5_000
    const refreshers = yield* FiberMap.make<string>()
    // Lease refreshes and idle releases run two at a time: each is a few file operations, and a
    // thousand of them at once would queue in front of the turns' appends in libuv's thread
    // pool (four threads). Taken before the session's lock, so no turn waits behind the queue;
    // a refresh has two thirds of `leaseMs` to spare.
    const backgroundIo = yield* Effect.makeSemaphore(2)
    const flushers = yield* FiberSet.make()
    const indexPath = path.join(dir, RESUME_INDEX)
    /** Resume states of this runtime (decoded from the index, or folded here). */
    const resumes = new Map<string, Resume>()
    /** Sessions whose index entry proved stale: removed at the next write. */
    const dropped = new Set<string>()
    let indexDirty = false
    let flushScheduled = false
    // Parsed transcripts are the one per-session cache that grows with turns: bounded, least
    // recently used out; an evicted one is read from the file again when next needed.
    const parsedCache = new Lru<string, { readonly tail: Tail; readonly parsed: Parsed }>({
      maxEntries: options.cacheSessions ?? 1000,
      maxWeight: options.cacheBytes ?? 16 * 1024 * 1024,
      weigh: (v) => v.parsed.endOffset * PARSED_BYTES_PER_FILE_BYTE,
      onEvict: (_, v) => {
        if (v.tail.parsed === v.parsed) v.tail.parsed = undefined
      }
    })
    /** Records (or re-weighs) the parsed copy `tail` holds; forgets it when there is none. */
    const cacheParsed = (sessionId: string, tail: Tail): void => {
      if (tail.parsed === undefined) parsedCache.delete(sessionId)
      else parsedCache.set(sessionId, { tail, parsed: tail.parsed })
    }

    const storage =
      (file: string, what: string) =>
      (e: PlatformError): StorageError =>
        new StorageError({ path: file, message: `${what} ${file}: ${e.message}` })

    yield* fs.makeDirectory(dir, { recursive: true }).pipe(Effect.mapError(storage(dir, "cannot create")))

    const sessionOf = (sessionId: string): Effect.Effect<Session, StorageError> => {
      const known = sessions.get(sessionId)
      if (known !== undefined) return Effect.succeed(known)
      const decoded = decodeSessionId(sessionId)
      if (Either.isLeft(decoded)) {
        return Effect.fail(
          new StorageError({ path: dir, message: `not a usable session id ${JSON.stringify(sessionId)}` })
        )
      }
      return Effect.sync(() => {
        let s = sessions.get(sessionId)
        if (s === undefined) {
          const file = path.join(dir, `${sessionId}.jsonl`)
          s = {
            sessionId,
            path: file,
            lockPath: `${file}.lock`,
            lock: Effect.unsafeMakeSemaphore(1),
            lease: undefined
          }
          sessions.set(sessionId, s)
        }
        return s
      })
    }

    // ---- reading ------------------------------------------------------------------------

    /** The bytes of `file` from `start` to its end (no stat: reads until a short read). */
    const readFrom = (
      file: string,
      start: number,
      firstChunk = 64 * 1024
    ): Effect.Effect<Uint8Array, PlatformError> =>
      Effect.scoped(
        Effect.gen(function* () {
          const handle = yield* fs.open(file, { flag: "r" })
          if (start > 0) yield* handle.seek(start, "start")
          const chunks: Array<Uint8Array> = []
          let size = firstChunk
          for (;;) {
            const got = yield* handle.readAlloc(size)
            if (Option.isNone(got)) break
            chunks.push(got.value)
            if (got.value.length < size) break
            size = Math.min(size * 4, 16 * 1024 * 1024)
          }
          return concat(chunks)
        })
      )

    /** Folds `chunk`, which starts at byte `base` of the file, into `tail`. */
    const foldChunk = (tail: Tail, chunk: Uint8Array, base: number): Tail => {
      const lastNl = chunk.lastIndexOf(10)
      if (lastNl >= 0) {
        foldText(tail.fold, decode(chunk.subarray(0, lastNl + 1)), nextLine(tail.fold))
        const prevNl = lastNl > 0 ? chunk.lastIndexOf(10, lastNl - 1) : -1
        tail.checkStart = base + prevNl + 1
        tail.checkHash = fingerprint(chunk, prevNl + 1, lastNl + 1)
        tail.endOffset = base + lastNl + 1
      }
      tail.size = base + chunk.length
      const rest = chunk.subarray(lastNl + 1)
      tail.torn = rest.length > 0 ? torn(nextLine(tail.fold), decode(rest)) : undefined
      tail.missing = false
      return tail
    }

    const emptyTail = (fold: FoldState, missing: boolean): Tail => ({
      fold,
      endOffset: 0,
      checkStart: 0,
      checkHash: EMPTY_HASH,
      size: 0,
      torn: undefined,
      missing,
      ino: Option.none(),
      dirty: false
    })

    const readIndex = fs.readFileString(indexPath).pipe(
      Effect.map(parseIndex),
      Effect.orElseSucceed(() => new Map<string, unknown>())
    )
    /**
     * The index as this runtime first read it; each entry is decoded when its session is folded.
     * Read once, by a fiber of the runtime rather than by its first caller: a caller interrupted
     * during the read (a turn at its deadline) leaves the read going, and every caller that
     * waits for it gets the index. (`Effect.cached` kept the first caller's interruption as the
     * result, so every later fold failed as interrupted.)
     */
    const indexRead = yield* Deferred.make<Map<string, unknown>>()
    let indexReadStarted = false
    // Started and marked in one uninterruptible step, so a read is never marked but not started.
    const startIndexRead = Effect.uninterruptible(
      Effect.suspend(() => {
        if (indexReadStarted) return Effect.void
        indexReadStarted = true
        return Effect.asVoid(FiberSet.run(flushers, Effect.intoDeferred(readIndex, indexRead)))
      })
    )
    const storedIndex: Effect.Effect<Map<string, unknown>> = Effect.zipRight(
      startIndexRead,
      Deferred.await(indexRead)
    )

    const resumeOf = (s: Session): Effect.Effect<Resume | undefined> =>
      Effect.suspend(() => {
        const known = resumes.get(s.sessionId)
        if (known !== undefined) return Effect.succeed(known)
        return Effect.map(storedIndex, (stored) => {
          const value = stored.get(s.sessionId)
          if (value === undefined) return undefined
          stored.delete(s.sessionId)
          const resume = decodeEntry(value, s.sessionId)
          if (resume !== undefined) resumes.set(s.sessionId, resume)
          return resume
        })
      })

    /** Writes the index: the file's entries (another process may share the directory) with ours over them. */
    const writeIndex: Effect.Effect<void> = Effect.gen(function* () {
      indexDirty = false
      const entries = yield* readIndex
      for (const id of dropped) entries.delete(id)
      for (const [id, resume] of resumes) if (resume.endOffset >= resumeMinBytes) entries.set(id, resume)
      const temp = `${indexPath}.${owner}.${Math.random().toString(36).slice(2)}.tmp`
      yield* fs.writeFileString(temp, formatIndex(entries)).pipe(
        Effect.zipRight(fs.rename(temp, indexPath)),
        Effect.tapError((e) =>
          Effect.zipRight(
            fs.remove(temp).pipe(Effect.ignore),
            Effect.logWarning(`cannot write the resume index ${indexPath}: ${e.message}`)
          )
        ),
        Effect.ignore
      )
    })

    /** Schedules a write of the index `resumeFlushMs` from now, unless one is pending; no timer otherwise. */
    const markIndexDirty: Effect.Effect<void> = Effect.suspend(() => {
      indexDirty = true
      if (flushScheduled) return Effect.void
      flushScheduled = true
      const flusher: Effect.Effect<void> = Effect.gen(function* () {
        for (;;) {
          yield* Effect.sleep(resumeFlushMs)
          yield* writeIndex
          if (!indexDirty) {
            flushScheduled = false
            return
          }
        }
      })
      return Effect.asVoid(FiberSet.run(flushers, Effect.interruptible(flusher)))
    })

    /**
     * Reads what the file says: from the resume state when the file still holds, at the
     * same place, the line that state ended with (a read of the tail); else all of it.
     */
    const load = (s: Session): Effect.Effect<Tail, StorageError> =>
      Effect.gen(function* () {
        const resume = yield* resumeOf(s)
        if (resume !== undefined && resume.endOffset > 0) {
          // Sized for the checked line and a few more: a consistent session costs one short read.
          const bytes = yield* readFrom(
            s.path,
            resume.checkStart,
            resume.endOffset - resume.checkStart + 16 * 1024
          ).pipe(
            Effect.map(Option.some),
            Effect.catchIf(isNotFound, () => Effect.succeed(Option.none<Uint8Array>()))
          )
          const lineLength = resume.endOffset - resume.checkStart
          const chunk = Option.getOrElse(bytes, () => new Uint8Array(0))
          if (
            Option.isSome(bytes) &&
            chunk.length >= lineLength &&
            chunk[lineLength - 1] === 10 &&
            fingerprint(chunk, 0, lineLength) === resume.checkHash
          ) {
            const tail: Tail = {
              ...emptyTail(copyFoldState(resume.fold), false),
              endOffset: resume.endOffset,
              checkStart: resume.checkStart,
              checkHash: resume.checkHash
            }
            return foldChunk(tail, chunk.subarray(lineLength), resume.endOffset)
          }
          // Gone, or rewritten behind the resume state (shorter, or another line there): start over.
          resumes.delete(s.sessionId)
          dropped.add(s.sessionId)
          yield* markIndexDirty
          if (Option.isNone(bytes)) return emptyTail(initialFoldState(s.sessionId), true)
        }
        const whole = yield* fs.readFile(s.path).pipe(
          Effect.map(Option.some),
          Effect.catchIf(isNotFound, () => Effect.succeed(Option.none<Uint8Array>()))
        )
        if (Option.isNone(whole)) return emptyTail(initialFoldState(s.sessionId), true)
        return foldChunk(emptyTail(initialFoldState(s.sessionId), false), whole.value, 0)
      }).pipe(
        Effect.mapError(storage(s.path, "cannot read")),
        Effect.tap((tail) => {
          const problems = tail.torn === undefined ? tail.fold.problems : [...tail.fold.problems, tail.torn]
          return problems.length === 0
            ? Effect.void
            : Effect.logWarning(`transcript ${s.path}: ${problems.map((p) => p.message).join("; ")}`)
        })
      )

    /** Keeps where this fold stopped: in memory, and (for long files) in the resume index. */
    const saveResume = (s: Session, tail: Tail): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (tail.missing || tail.endOffset === 0) return Effect.void
        const known = resumes.get(s.sessionId)
        if (known !== undefined && known.endOffset >= tail.endOffset) return Effect.void
        resumes.set(s.sessionId, {
          fold: copyFoldState(tail.fold),
          endOffset: tail.endOffset,
          checkStart: tail.checkStart,
          checkHash: tail.checkHash
        })
        dropped.delete(s.sessionId)
        return tail.endOffset >= resumeMinBytes ? markIndexDirty : Effect.void
      })

    /** The parsed file: from the lease holder's cache when it is exact, else read whole (and cached). */
    const parsedOf = (s: Session): Effect.Effect<ParsedTranscript | undefined, StorageError> =>
      Effect.suspend(() => {
        const tail = s.lease?.tail
        const cached = tail?.parsed
        if (
          tail !== undefined &&
          !tail.dirty &&
          cached !== undefined &&
          cached.endOffset === tail.endOffset
        ) {
          parsedCache.get(s.sessionId)
          return Effect.succeed<ParsedTranscript>(cached)
        }
        return fs.readFile(s.path).pipe(
          Effect.map((bytes) => {
            const parsed = parseTranscript(decode(bytes))
            // Cache only an exact picture: no torn tail, nothing appended while reading.
            const now = s.lease?.tail
            if (now !== undefined && now === tail && !now.dirty && bytes.length === now.endOffset) {
              now.parsed = {
                header: parsed.header,
                lines: [...parsed.lines],
                problems: parsed.problems,
                endOffset: bytes.length
              }
              cacheParsed(s.sessionId, now)
            }
            return parsed
          }),
          Effect.catchIf(isNotFound, () => Effect.succeed(undefined)),
          Effect.mapError(storage(s.path, "cannot read"))
        )
      })

    const entriesOf = (parsed: ParsedTranscript): Array<SeqEntry> => {
      const entries: Array<SeqEntry> = []
      for (const line of parsed.lines)
        if (line.entry !== undefined) entries.push({ seq: line.seq, entry: line.entry })
      return entries
    }

    // ---- the lease ----------------------------------------------------------------------

    const leased = (s: Session, holder?: LeaseRecord): SessionLeased =>
      new SessionLeased({
        sessionId: s.sessionId,
        message:
          holder === undefined
            ? `session ${s.sessionId} is leased by another live owner`
            : `session ${s.sessionId} is leased by another live owner (pid ${holder.pid}, refreshed at ${new Date(holder.refreshedAt).toISOString()})`
      })

    const readLock = (s: Session) =>
      fs.readFileString(s.lockPath).pipe(
        Effect.map((raw) => Option.some({ raw, record: parseLeaseRecord(raw) })),
        Effect.catchIf(isNotFound, () => Effect.succeed(Option.none()))
      )

    const recordAt = (acquiredAt: number, now: number): string =>
      formatLeaseRecord({ pid: process.pid, owner, acquiredAt, refreshedAt: now })

    /** Creates the lease file if there is none: `false` when it exists. */
    const createLock = (s: Session, now: number) =>
      Effect.scoped(
        Effect.gen(function* () {
          const handle = yield* fs.open(s.lockPath, { flag: "wx" })
          // A lease file we created but could not fill would look held by someone: remove it.
          yield* handle
            .writeAll(encode(recordAt(now, now)))
            .pipe(Effect.onError(() => fs.remove(s.lockPath).pipe(Effect.ignore)))
          return true
        })
      ).pipe(Effect.catchIf(isAlreadyExists, () => Effect.succeed(false)))

    /** Takes the lease file: creates it, or replaces a stale one; fails when a live owner holds it. */
    const takeLock = (s: Session, now: number): Effect.Effect<void, SessionLeased | StorageError> =>
      Effect.gen(function* () {
        for (let attempt = 0; attempt < 3; attempt++) {
          if (yield* createLock(s, now)) return
          const existing = yield* readLock(s)
          if (Option.isNone(existing)) continue
          const { raw, record } = existing.value
          if (record?.owner === owner) {
            yield* fs.writeFileString(s.lockPath, recordAt(now, now))
            return
          }
          let live: boolean
          if (record !== undefined) live = isProcessAlive(record.pid) && now - record.refreshedAt <= leaseMs
          else {
            // Being written, or garbage: judge it by its age.
            const info = yield* fs.stat(s.lockPath).pipe(Effect.option)
            const mtime = Option.flatMap(info, (i) => i.mtime)
            live = Option.isNone(mtime) || now - mtime.value.getTime() <= leaseMs
          }
          if (live) return yield* Effect.fail(leased(s, record))
          // Stale: move it aside, and go on only if what moved is what was judged stale.
          const tomb = `${s.lockPath}.stale-${owner}`
          const moved = yield* fs.rename(s.lockPath, tomb).pipe(
            Effect.as(true),
            Effect.catchIf(isNotFound, () => Effect.succeed(false))
          )
          if (!moved) continue
          const movedRaw = yield* fs.readFileString(tomb)
          if (movedRaw !== raw) {
            yield* fs.rename(tomb, s.lockPath)
            return yield* Effect.fail(leased(s, parseLeaseRecord(movedRaw)))
          }
          yield* fs.remove(tomb)
          yield* Effect.logInfo(
            `transcript ${s.path}: took over a stale lease${record === undefined ? "" : ` of pid ${record.pid}`}`
          )
        }
        return yield* Effect.fail(leased(s))
      }).pipe(
        Effect.catchTags({
          BadArgument: (e) => Effect.fail(storage(s.lockPath, "cannot take the lease")(e)),
          SystemError: (e) => Effect.fail(storage(s.lockPath, "cannot take the lease")(e))
        })
      )

    const closeFile = (lease: Lease): Effect.Effect<void> => {
      const scope = lease.scope
      lease.scope = undefined
      lease.file = undefined
      return scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
    }

    /** Forgets a lease that another owner took; the lease file is theirs now. */
    const drop = (s: Session, lease: Lease): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (s.lease === lease) s.lease = undefined
        parsedCache.delete(s.sessionId)
        return closeFile(lease)
      })

    /** Rewrites the lease file with a new `refreshedAt`, if it is still ours. */
    const refresh = (s: Session, lease: Lease): Effect.Effect<void, SessionLeased | StorageError> =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const current = yield* readLock(s)
        if (Option.isNone(current) || current.value.record?.owner !== owner) {
          yield* drop(s, lease)
          yield* Effect.logWarning(`transcript ${s.path}: lost its lease to another owner`)
          return yield* Effect.fail(leased(s, Option.getOrUndefined(current)?.record))
        }
        yield* fs.writeFileString(s.lockPath, recordAt(lease.acquiredAt, now))
        lease.lastRefreshAt = now
      }).pipe(
        Effect.catchTags({
          BadArgument: (e) => Effect.fail(storage(s.lockPath, "cannot refresh the lease")(e)),
          SystemError: (e) => Effect.fail(storage(s.lockPath, "cannot refresh the lease")(e))
        })
      )

    /** Gives the lease up: keeps where the fold stopped, closes the file, removes the lease file. */
    const release = (s: Session): Effect.Effect<void> =>
      Effect.gen(function* () {
        const lease = s.lease
        if (lease === undefined) return
        s.lease = undefined
        parsedCache.delete(s.sessionId)
        yield* closeFile(lease)
        if (lease.tail !== undefined && !lease.tail.dirty) yield* saveResume(s, lease.tail)
        const current = yield* readLock(s).pipe(Effect.orElseSucceed(() => Option.none()))
        if (Option.isSome(current) && current.value.record?.owner === owner) {
          yield* fs.remove(s.lockPath).pipe(Effect.ignore)
        }
      })

    /**
     * While the lease is held: refreshes it, and releases it once idle; then ends. The first
     * refresh comes after a part of the period that depends on the session (half to all of it),
     * the next ones every period: leases taken together (a burst of new sessions) are not all
     * refreshed in the same moment, each a read and a write of its lease file, in front of the
     * turns' appends.
     */
    const refresher = (s: Session, lease: Lease): Effect.Effect<void> =>
      Effect.gen(function* () {
        // After a failed refresh, the next try waits a whole period instead of spinning.
        let retryAt = 0
        const firstAt = lease.lastRefreshAt + Math.ceil(refreshEvery * refreshPhase(s.sessionId))
        const dueAt = () =>
          lease.lastRefreshAt === lease.acquiredAt ? firstAt : lease.lastRefreshAt + refreshEvery
        for (;;) {
          if (s.lease !== lease) return
          const now = yield* Clock.currentTimeMillis
          const refreshAt = Math.max(dueAt(), retryAt)
          const wake = lease.holders > 0 ? refreshAt : Math.min(refreshAt, lease.lastUsedAt + idleMs)
          if (wake > now) yield* Effect.sleep(wake - now)
          const step = yield* backgroundIo.withPermits(1)(
            s.lock.withPermits(1)(
              Effect.uninterruptible(
                Effect.gen(function* () {
                  if (s.lease !== lease) return "done" as const
                  const t = yield* Clock.currentTimeMillis
                  if (lease.holders === 0 && t >= lease.lastUsedAt + idleMs) {
                    yield* release(s)
                    return "done" as const
                  }
                  if (t < dueAt() || t < retryAt) return "wait" as const
                  return yield* refresh(s, lease).pipe(
                    Effect.as("wait" as const),
                    Effect.catchTags({
                      SessionLeased: () => Effect.succeed("done" as const),
                      StorageError: (e) => {
                        retryAt = t + refreshEvery
                        return Effect.logWarning(e.message).pipe(Effect.as("wait" as const))
                      }
                    })
                  )
                })
              )
            )
          )
          if (step === "done") return
        }
      }).pipe(Effect.interruptible)

    /** The lease of `s`, taken now if this process does not hold it. Run under `s.lock`. */
    const ensureLease = (s: Session): Effect.Effect<Lease, SessionLeased | StorageError> =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const held = s.lease
        if (held !== undefined) {
          // Nobody may judge the lease stale before `leaseMs` after its last refresh.
          if (now - held.lastRefreshAt >= leaseMs / 2) yield* refresh(s, held)
          return held
        }
        yield* takeLock(s, now)
        const lease: Lease = {
          acquiredAt: now,
          lastRefreshAt: now,
          verifiedAt: Number.NEGATIVE_INFINITY,
          lastUsedAt: now,
          holders: 0,
          tail: undefined,
          file: undefined,
          scope: undefined
        }
        s.lease = lease
        yield* FiberMap.run(refreshers, s.sessionId, refresher(s, lease))
        const tail = yield* load(s).pipe(Effect.tapError(() => release(s)))
        lease.tail = tail
        if (tail.missing) {
          // Seen missing under the lease just now: no stat before the first append, nothing to parse.
          lease.verifiedAt = now
          tail.parsed = { header: undefined, lines: [], problems: [], endOffset: 0 }
          cacheParsed(s.sessionId, tail)
        }
        return lease
      })

    // ---- appending ----------------------------------------------------------------------

    // Directory fsyncs are shared: a caller waits for one that starts after it asked, and
    // every caller that asks while one runs shares the next. A burst of new sessions then
    // costs a few directory syncs, not one each.
    let nextDirSync: Deferred.Deferred<void> | undefined
    let dirSyncing = false
    const syncDirectoryOnce = Effect.scoped(Effect.flatMap(fs.open(dir, { flag: "r" }), (d) => d.sync)).pipe(
      Effect.ignore
    )
    const dirSyncRounds: Effect.Effect<void> = Effect.suspend(() => {
      const round = nextDirSync
      if (round === undefined) {
        // Set in the same step as the check, so a caller never waits on a syncer that ended.
        dirSyncing = false
        return Effect.void
      }
      nextDirSync = undefined
      return syncDirectoryOnce.pipe(
        Effect.ensuring(Deferred.succeed(round, undefined)),
        Effect.zipRight(dirSyncRounds)
      )
    })
    /** Makes new directory entries durable: best effort where directories open. */
    const syncDirectory: Effect.Effect<void> = Effect.suspend(() => {
      if (nextDirSync === undefined) nextDirSync = Deferred.unsafeMake<void>(FiberId.none)
      const round = nextDirSync
      if (!dirSyncing) {
        dirSyncing = true
        // Uninterruptible: a round that started completes, so no waiter is left behind.
        const rounds = dirSyncRounds.pipe(
          Effect.ensuring(
            Effect.suspend(() => {
              if (!dirSyncing) return Effect.void
              // Ended by a defect: release the waiters (the sync is best effort).
              dirSyncing = false
              const left = nextDirSync
              nextDirSync = undefined
              return left === undefined ? Effect.void : Deferred.succeed(left, undefined)
            })
          ),
          Effect.uninterruptible
        )
        return Effect.zipRight(FiberSet.run(flushers, rounds), Deferred.await(round))
      }
      return Deferred.await(round)
    })

    /** The file handle appends go through (opened for appending, kept while the lease is). */
    const fileOf = (s: Session, lease: Lease): Effect.Effect<FileSystem.File, PlatformError> => {
      if (lease.file !== undefined) return Effect.succeed(lease.file)
      return Effect.gen(function* () {
        const scope = yield* Scope.make()
        const file = yield* fs.open(s.path, { flag: "a" }).pipe(
          Scope.extend(scope),
          Effect.tapError(() => Scope.close(scope, Exit.void))
        )
        lease.scope = scope
        lease.file = file
        return file
      })
    }

    /** Cuts the file back to the cached end (a missing file is already empty). */
    const cutBack = (s: Session, tail: Tail): Effect.Effect<void, PlatformError> =>
      fs.truncate(s.path, tail.endOffset).pipe(
        Effect.catchIf(
          (e) => isNotFound(e) && tail.endOffset === 0,
          () => Effect.void
        )
      )

    const truncateTo = (s: Session, tail: Tail): Effect.Effect<void, StorageError> =>
      cutBack(s, tail).pipe(
        Effect.tap(() => {
          tail.size = tail.endOffset
          tail.torn = undefined
          tail.dirty = false
          tail.parsed = undefined
          cacheParsed(s.sessionId, tail)
        }),
        Effect.mapError(storage(s.path, "cannot truncate"))
      )

    /**
     * Makes the cached end of the file true before an append: reloads a file that was
     * replaced or shortened, folds complete lines someone else appended, and truncates a
     * torn line (or the remains of a failed append of ours). The lease makes the cache
     * valid; the file is still checked (one stat) once per `refreshEvery`, in case a tool
     * that knows no leases wrote to it.
     */
    const prepare = (s: Session, lease: Lease, now: number): Effect.Effect<Tail, StorageError> =>
      Effect.gen(function* () {
        const cached = lease.tail
        if (
          cached !== undefined &&
          !cached.dirty &&
          cached.size === cached.endOffset &&
          now - lease.verifiedAt < refreshEvery
        ) {
          return cached
        }
        let tail = cached ?? (yield* load(s))
        lease.tail = tail
        const info = yield* fs.stat(s.path).pipe(
          Effect.map(Option.some),
          Effect.catchIf(isNotFound, () => Effect.succeed(Option.none<FileSystem.File.Info>())),
          Effect.mapError(storage(s.path, "cannot stat"))
        )
        const size = Option.match(info, { onNone: () => 0, onSome: (i) => Number(i.size) })
        const ino = Option.flatMap(info, (i) => i.ino)
        const replaced =
          (Option.isNone(info) && tail.endOffset > 0) ||
          size < tail.endOffset ||
          (Option.isSome(tail.ino) && Option.isSome(ino) && tail.ino.value !== ino.value)
        if (replaced) {
          yield* Effect.logWarning(`transcript ${s.path} was replaced or shortened; reading it again`)
          yield* closeFile(lease)
          resumes.delete(s.sessionId)
          dropped.add(s.sessionId)
          tail = yield* load(s)
          lease.tail = tail
          parsedCache.delete(s.sessionId)
        } else if (!tail.dirty && size > tail.endOffset) {
          const bytes = yield* readFrom(s.path, tail.endOffset).pipe(
            Effect.mapError(storage(s.path, "cannot read"))
          )
          foldChunk(tail, bytes, tail.endOffset)
        }
        tail.ino = ino
        if (tail.dirty || tail.size > tail.endOffset) yield* truncateTo(s, tail)
        lease.verifiedAt = now
        return tail
      })

    /** Appends `lines` (JSON text without newlines) at the cached end, durably; undoes a failed write. */
    const writeLines = (
      s: Session,
      lease: Lease,
      tail: Tail,
      lines: ReadonlyArray<{ readonly text: string; readonly value: LineValue }>
    ): Effect.Effect<void, StorageError> => {
      let text = ""
      for (const line of lines) text += `${line.text}\n`
      const bytes = encode(text)
      const creating = tail.endOffset === 0
      return Effect.gen(function* () {
        const file = yield* fileOf(s, lease)
        yield* file.writeAll(bytes)
        yield* file.sync
        if (creating) {
          // A new file is durable once its directory entry is: best effort where directories open.
          yield* syncDirectory
        }
      }).pipe(
        Effect.onError(() =>
          closeFile(lease).pipe(
            Effect.zipRight(cutBack(s, tail)),
            Effect.catchAll(() =>
              Effect.sync(() => {
                tail.dirty = true
              })
            )
          )
        ),
        Effect.mapError(storage(s.path, "cannot append to")),
        Effect.tap(() => {
          let lineIndex = nextLine(tail.fold)
          const cache =
            tail.parsed !== undefined && tail.parsed.endOffset === tail.endOffset ? tail.parsed : undefined
          tail.parsed = cache
          for (const line of lines) {
            if (cache !== undefined) {
              if (lineIndex === 0 && line.value._tag === "Header") cache.header = line.value.header
              else if (line.value._tag === "Entry")
                cache.lines.push({ seq: lineIndex - 1, entry: line.value.entry })
            }
            foldLine(tail.fold, lineIndex++, line.value)
          }
          const lastStart = bytes.length > 1 ? bytes.lastIndexOf(10, bytes.length - 2) + 1 : 0
          tail.checkStart = tail.endOffset + lastStart
          tail.checkHash = fingerprint(bytes, lastStart, bytes.length)
          tail.endOffset += bytes.length
          tail.size = tail.endOffset
          tail.missing = false
          if (cache !== undefined) cache.endOffset = tail.endOffset
          cacheParsed(s.sessionId, tail)
        })
      )
    }

    /** Runs `f` with the session's lock and lease, uninterruptibly once the lock is held. */
    const withLease = <A, E>(
      sessionId: string,
      f: (s: Session, lease: Lease, tail: Tail, now: number) => Effect.Effect<A, E>
    ): Effect.Effect<A, E | SessionLeased | StorageError> =>
      Effect.flatMap(sessionOf(sessionId), (s) =>
        s.lock.withPermits(1)(
          Effect.uninterruptible(
            Effect.gen(function* () {
              const lease = yield* ensureLease(s)
              const now = yield* Clock.currentTimeMillis
              const tail = yield* prepare(s, lease, now)
              const result = yield* f(s, lease, tail, now)
              lease.lastUsedAt = now
              return result
            })
          )
        )
      )

    const headerLine = (s: Session, iso: string, sessionKey: string | undefined) => {
      const header = sessionHeader(s.sessionId, iso, cwd, sessionKey)
      return { text: JSON.stringify(header), value: { _tag: "Header", header } as const }
    }

    const append = (
      sessionId: string,
      entries: ReadonlyArray<NewEntry>,
      appendOptions?: AppendOptions
    ): Effect.Effect<ReadonlyArray<Appended>, SessionLeased | StorageError> =>
      entries.length === 0
        ? Effect.as(sessionOf(sessionId), [])
        : withLease(sessionId, (s, lease, tail, now) =>
            Effect.gen(function* () {
              const iso = new Date(now).toISOString()
              const lines: Array<{ text: string; value: LineValue }> = []
              if (!tail.fold.headerLine) lines.push(headerLine(s, iso, appendOptions?.sessionKey))
              const appended: Array<Appended> = []
              let parentId = tail.fold.lastId ?? null
              let seq = tail.fold.nextSeq
              // An entry that is not one is the caller's bug: a defect, and nothing is written.
              yield* Effect.sync(() => {
                for (const input of entries) {
                  const entry = completeEntry(input, parentId, iso)
                  const id = (entry as { id: string }).id
                  lines.push({ text: JSON.stringify(entry), value: { _tag: "Entry", entry } })
                  appended.push({ seq: seq++, id })
                  parentId = id
                }
              })
              yield* writeLines(s, lease, tail, lines)
              return appended
            })
          )

    const appendCompaction = (
      sessionId: string,
      request: CompactionRequest
    ): Effect.Effect<CompactionAppended, SessionLeased | StorageError> =>
      withLease(sessionId, (s, lease, tail, now) =>
        Effect.gen(function* () {
          const parsed = yield* parsedOf(s)
          let index = 0
          for (const line of parsed?.lines ?? []) {
            if (line.entry?.type !== "compaction") continue
            index++
            const entry = line.entry as CompactionEntry
            if ((entry.compactionId ?? entry.id) === request.compactionId) {
              return { seq: line.seq, index, created: false, entry }
            }
          }
          const context = contextOf(parsed === undefined ? [] : entriesOf(parsed))
          const kept = entriesSinceCut(context, request.firstKeptEntryId)
          if (kept === undefined) {
            return yield* Effect.fail(
              new StorageError({
                path: s.path,
                message: `cannot compact ${s.path}: firstKeptEntryId ${JSON.stringify(request.firstKeptEntryId)} is not in the context`
              })
            )
          }
          const entry = compactionEntry(request, request.build(kept), tail.fold.lastId ?? null, now)
          const lines: Array<{ text: string; value: LineValue }> = []
          if (!tail.fold.headerLine) lines.push(headerLine(s, entry.timestamp, undefined))
          const seq = tail.fold.nextSeq
          lines.push({ text: JSON.stringify(entry), value: { _tag: "Entry", entry } })
          yield* writeLines(s, lease, tail, lines)
          return { seq, index: tail.fold.compactionIndex, created: true, entry }
        })
      )

    // ---- reading through the service ----------------------------------------------------

    const read = (sessionId: string): Effect.Effect<TranscriptRead, StorageError> =>
      Effect.gen(function* () {
        const s = yield* sessionOf(sessionId)
        const parsed = yield* parsedOf(s)
        if (parsed === undefined) {
          return {
            entries: [],
            problems: [{ kind: "missing", message: `transcript ${s.path} does not exist` }]
          }
        }
        return {
          ...(parsed.header !== undefined ? { header: parsed.header } : {}),
          entries: entriesOf(parsed),
          problems: parsed.problems
        } satisfies TranscriptRead
      })

    const buildContext = (sessionId: string): Effect.Effect<Context, StorageError> =>
      Effect.gen(function* () {
        const s = yield* sessionOf(sessionId)
        const parsed = yield* parsedOf(s)
        return contextOf(parsed === undefined ? [] : entriesOf(parsed))
      })

    const missingFold = (s: Session): Fold =>
      finishFold(initialFoldState(s.sessionId), [
        { kind: "missing", message: `transcript ${s.path} does not exist` }
      ])

    const fold = (sessionId: string): Effect.Effect<Fold, StorageError> =>
      Effect.gen(function* () {
        const s = yield* sessionOf(sessionId)
        if (s.lease !== undefined) {
          const held = yield* s.lock.withPermits(1)(
            Effect.sync(() => {
              const tail = s.lease?.tail
              if (tail === undefined) return undefined
              return tail.missing
                ? missingFold(s)
                : finishFold(tail.fold, tail.torn === undefined ? [] : [tail.torn])
            })
          )
          if (held !== undefined) return held
        }
        const tail = yield* load(s)
        if (tail.missing) return missingFold(s)
        yield* saveResume(s, tail)
        return finishFold(tail.fold, tail.torn === undefined ? [] : [tail.torn])
      })

    const exists = (sessionId: string): Effect.Effect<boolean, StorageError> =>
      Effect.flatMap(sessionOf(sessionId), (s) =>
        fs.exists(s.path).pipe(Effect.mapError(storage(s.path, "cannot stat")))
      )

    const list: Effect.Effect<ReadonlyArray<string>, StorageError> = fs.readDirectory(dir).pipe(
      Effect.map((names) =>
        names.filter((n) => n.endsWith(".jsonl")).map((n) => n.slice(0, -".jsonl".length))
      ),
      Effect.catchIf(isNotFound, () => Effect.succeed([])),
      Effect.mapError(storage(dir, "cannot list"))
    )

    const hold = (sessionId: string): Effect.Effect<void, SessionLeased | StorageError, Scope.Scope> =>
      Effect.flatMap(sessionOf(sessionId), (s) =>
        Effect.acquireRelease(
          s.lock.withPermits(1)(
            Effect.uninterruptible(
              Effect.map(ensureLease(s), (lease) => {
                lease.holders++
                return lease
              })
            )
          ),
          (lease) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) =>
              Effect.sync(() => {
                lease.holders--
                lease.lastUsedAt = now
              })
            )
        )
      ).pipe(Effect.asVoid)

    /**
     * Gives back the lease of `sessionId` now, unless a turn or a compaction holds it: the
     * session moved to another runner, which should not wait for the idle release.
     */
    const letGo = (sessionId: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        const s = sessions.get(sessionId)
        if (s === undefined || s.lease === undefined) return Effect.void
        return s.lock.withPermits(1)(
          Effect.suspend(() => (s.lease !== undefined && s.lease.holders === 0 ? release(s) : Effect.void))
        )
      })

    yield* Effect.addFinalizer(() =>
      Effect.forEach([...sessions.values()], (s) => s.lock.withPermits(1)(release(s)), {
        discard: true
      }).pipe(Effect.zipRight(Effect.suspend(() => (indexDirty ? writeIndex : Effect.void))))
    )

    /** What the parsed-transcript cache holds (for tests and the soak benchmark). */
    const cacheStats: Effect.Effect<CacheStats> = Effect.sync(() => {
      let leases = 0
      for (const s of sessions.values()) if (s.lease !== undefined) leases++
      return {
        sessions: parsedCache.size,
        bytes: parsedCache.weight,
        evictions: parsedCache.evictions,
        leases
      }
    })

    return {
      cacheStats,
      append: (sessionId: string, entries: ReadonlyArray<NewEntry>, appendOptions?: AppendOptions) =>
        timedAppend("converge.transcript.append", sessionId, append(sessionId, entries, appendOptions)),
      appendCompaction: (sessionId: string, request: CompactionRequest) =>
        timedAppend("converge.transcript.append_compaction", sessionId, appendCompaction(sessionId, request)),
      read,
      buildContext,
      fold,
      exists,
      list,
      hold,
      letGo
    } as const
  })

/**
 * The transcripts of a sessions directory: append (leased, serialized per session, durable),
 * idempotent compaction append, tolerant reads, context building and the recovery fold.
 */
export class Transcript extends Effect.Service<Transcript>()("converge/Transcript", {
  scoped: make
}) {
  /** The service over `options.sessionsDir`; needs `FileSystem` and `Path`. */
  static readonly layer = (
    options: TranscriptOptions
  ): Layer.Layer<Transcript, StorageError, FileSystem.FileSystem | Path.Path> => Transcript.Default(options)
}
