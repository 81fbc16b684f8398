/**
 * The JSON file backend: OpenClaw's `<sessionsDir>/sessions.json`, read and written under
 * `sessions.json.lock`, merged on every flush with what other processes wrote.
 */
import { FileSystem, Path } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Metrics, SessionEntry, StorageError, StoreCorrupt } from "@converge/domain"
import { Clock, Effect, Either, HashMap, Option, ParseResult, Ref, Schema } from "effect"
import { jsonEqual, mergeFileWithMemory, normalizeForeignReset } from "../merge.js"
import { writeAtomic } from "./atomicWrite.js"
import type { Backend, Loaded, Persisted } from "./backend.js"
import { withLock } from "./lock.js"

/** Options of the file backend. */
export interface FileBackendOptions {
  readonly sessionsDir: string
  readonly flushIntervalMs: number
  readonly lockTimeoutMs: number
  readonly lockStaleMs: number
}

/**
 * The content of `sessions.json`, read: its entries in file order, the keys whose value is
 * not an entry (with those values as they are, and why), and every key in file order.
 */
export type ParsedSessionsFile =
  | {
      readonly _tag: "Ok"
      readonly entries: ReadonlyArray<readonly [string, SessionEntry]>
      readonly bad: ReadonlyArray<string>
      readonly problem: string | undefined
      readonly unreadable: ReadonlyArray<Unreadable>
      readonly order: ReadonlyArray<string>
    }
  | { readonly _tag: "Unreadable"; readonly problem: string }

const isEntry = Schema.is(SessionEntry)

/** A value of `sessions.json` that is not a session entry: kept as it is, not served. */
export interface Unreadable {
  readonly key: string
  readonly value: unknown
  readonly problem: string
}

const whyNotEntry = (key: string, value: unknown): string => {
  const decoded = Schema.decodeUnknownEither(SessionEntry)(value)
  const why = Either.isLeft(decoded)
    ? ParseResult.TreeFormatter.formatErrorSync(decoded.left)
    : "not an entry"
  return `the entry ${JSON.stringify(key)} is not a session entry: ${why}`
}

/** Reads the text of `sessions.json`; a wrong shape is reported, never thrown. */
export const parseSessionsFile = (text: string): ParsedSessionsFile => {
  if (text.length === 0) return { _tag: "Unreadable", problem: "it is empty (0 bytes)" }
  if (text.trim().length === 0) return { _tag: "Unreadable", problem: "it holds only white space" }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    return { _tag: "Unreadable", problem: `it is not JSON (${e instanceof Error ? e.message : String(e)})` }
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return { _tag: "Unreadable", problem: "it is not a JSON object of session entries" }
  }
  const record: Record<string, unknown> = { ...json }
  const entries: Array<readonly [string, SessionEntry]> = []
  const bad: Array<string> = []
  const unreadable: Array<Unreadable> = []
  const order = Object.keys(record)
  for (const key of order) {
    const value = record[key]
    if (isEntry(value)) {
      entries.push([key, value])
      continue
    }
    bad.push(key)
    unreadable.push({ key, value, problem: whyNotEntry(key, value) })
  }
  return { _tag: "Ok", entries, bad, problem: unreadable[0]?.problem, unreadable, order }
}

/** One `"key": {…}` member of the file, indented as `JSON.stringify(file, null, 2)` indents it. */
const memberBytes = (key: string, entry: SessionEntry): Uint8Array =>
  Buffer.from(JSON.stringify({ [key]: entry }, null, 2).slice(2, -2))

const OPEN = Buffer.from("{\n")
const SEPARATOR = Buffer.from(",\n")
const CLOSE = Buffer.from("\n}\n")
const EMPTY = Buffer.from("{}\n")

const sameBytes = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean =>
  a !== undefined && b !== undefined && a.length === b.length && Buffer.compare(a, b) === 0

/** What this process last read or wrote: the base of the three-way rule and the fast path. */
interface FileState {
  /** Entries as stored after the last load or flush (normalized). */
  readonly base: HashMap.HashMap<string, SessionEntry>
  /** Keys in file order (unreadable ones included), and as a set. */
  readonly order: ReadonlyArray<string>
  readonly known: ReadonlySet<string>
  /** Values of the file that are not entries, by key: written back as they are, never served. */
  readonly unreadable: ReadonlyMap<string, Unreadable>
  /** The bytes of the file as this process last read or wrote them. */
  readonly bytes: Uint8Array | undefined
  /** The file's identity when `bytes` were read or written, and when that was seen. */
  readonly seen: Seen | undefined
}

/** A file's inode, size and mtime, and the clock time they were seen at. */
interface Seen {
  readonly signature: string
  readonly mtime: number
  readonly at: number
}

/** Builds the file backend; its effects need nothing more. */
export const makeFileBackend = (
  options: FileBackendOptions
): Effect.Effect<Backend, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const directory = options.sessionsDir
    const filePath = path.join(directory, "sessions.json")
    const owner = crypto.randomUUID()
    const lock = {
      path: `${filePath}.lock`,
      owner,
      timeoutMs: options.lockTimeoutMs,
      staleMs: options.lockStaleMs
    }
    const tmpPath = `${filePath}.tmp-${owner}`
    const state = yield* Ref.make<FileState>({
      base: HashMap.empty(),
      order: [],
      known: new Set(),
      unreadable: new Map(),
      bytes: undefined,
      seen: undefined
    })
    // Serialized members, reused while the entry object is the same: a flush encodes only what changed.
    // Values that are not entries are cached here too, by the value read.
    const cache = new Map<string, { readonly value: unknown; readonly bytes: Uint8Array }>()

    const fail = (what: string) => (e: PlatformError) =>
      new StorageError({ path: filePath, message: `cannot ${what} ${filePath}: ${e.message}` })

    /**
     * The bytes of the file: `entries` in `order`, re-encoding only the keys in `changed` (and
     * any not encoded yet); the others are copied from the cache.
     */
    // The same for values that are not entries, kept while the value read is the same.
    const rawMember = (u: Unreadable): Uint8Array => {
      const cached = cache.get(u.key)
      if (cached !== undefined && cached.value === u.value) return cached.bytes
      const bytes = memberBytes(u.key, u.value as SessionEntry)
      cache.set(u.key, { value: u.value, bytes })
      return bytes
    }

    const serialize = (
      entries: HashMap.HashMap<string, SessionEntry>,
      order: ReadonlyArray<string>,
      changed: Iterable<string>,
      unreadable: ReadonlyMap<string, Unreadable>
    ): Uint8Array => {
      const encode = (key: string) => {
        const found = HashMap.get(entries, key)
        if (Option.isNone(found)) return undefined
        const cached = cache.get(key)
        if (cached !== undefined && cached.value === found.value) return cached
        const fresh = { value: found.value, bytes: memberBytes(key, found.value) }
        cache.set(key, fresh)
        return fresh
      }
      for (const key of changed) encode(key)
      const members: Array<Uint8Array> = []
      let size = OPEN.length + CLOSE.length
      for (const key of order) {
        const u = unreadable.size > 0 ? unreadable.get(key) : undefined
        const member =
          u !== undefined && !HashMap.has(entries, key)
            ? { bytes: rawMember(u) }
            : (cache.get(key) ?? encode(key))
        if (member === undefined) continue
        size += member.bytes.length + (members.length > 0 ? SEPARATOR.length : 0)
        members.push(member.bytes)
      }
      if (members.length === 0) return EMPTY
      const out = new Uint8Array(size)
      out.set(OPEN, 0)
      let offset = OPEN.length
      for (let i = 0; i < members.length; i++) {
        if (i > 0) {
          out.set(SEPARATOR, offset)
          offset += SEPARATOR.length
        }
        const member = members[i]!
        out.set(member, offset)
        offset += member.length
      }
      out.set(CLOSE, offset)
      return out
    }

    // One read of the whole file (not readFile's chunks): a flush then waits for the event loop a few times, not dozens.
    const readBytes = Effect.scoped(
      Effect.gen(function* () {
        const file = yield* fs.open(filePath, { flag: "r" })
        const size = Number((yield* file.stat).size)
        const bytes = new Uint8Array(size)
        let offset = 0
        while (offset < size) {
          const n = Number(yield* file.read(bytes.subarray(offset)))
          if (n === 0) break
          offset += n
        }
        // A file that grew since the stat is read to its end.
        const rest = yield* file.readAlloc(64 * 1024)
        if (Option.isNone(rest)) return bytes.subarray(0, offset)
        const chunks: Array<Uint8Array> = [bytes.subarray(0, offset), rest.value]
        while (true) {
          const more = yield* file.readAlloc(1024 * 1024)
          if (Option.isNone(more)) break
          chunks.push(more.value)
        }
        return Buffer.concat(chunks)
      })
    ).pipe(
      Effect.map(Option.some),
      Effect.catchIf(
        (e) => e._tag === "SystemError" && e.reason === "NotFound",
        () => Effect.succeed(Option.none<Uint8Array>())
      ),
      Effect.mapError(fail("read"))
    )

    /** Moves an unreadable `sessions.json` aside (never overwritten) and describes it. */
    const moveAside = (problem: string, kept: number): Effect.Effect<StoreCorrupt, StorageError> =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        let movedTo = `${filePath}.corrupt-${now}`
        for (let n = 1; yield* fs.exists(movedTo).pipe(Effect.mapError(fail("inspect"))); n++) {
          movedTo = `${filePath}.corrupt-${now}-${n}`
        }
        yield* fs.rename(filePath, movedTo).pipe(Effect.mapError(fail("move aside")))
        const error = new StoreCorrupt({
          path: filePath,
          movedTo,
          message: `${filePath} could not be read: ${problem}; it was moved aside to ${movedTo} and the store starts from the ${kept} entries it could keep`
        })
        yield* Effect.logError(error.message).pipe(Effect.annotateLogs({ path: filePath, movedTo }))
        return error
      })

    /** The identity of the file now (none when it is missing or the file system does not tell). */
    const look: Effect.Effect<Option.Option<Seen | undefined>, StorageError> = fs.stat(filePath).pipe(
      Effect.flatMap((info) =>
        Effect.map(Clock.currentTimeMillis, (at): Seen | undefined => {
          if (Option.isNone(info.ino) || Option.isNone(info.mtime)) return undefined
          const mtime = info.mtime.value.getTime()
          return { signature: `${info.ino.value}:${info.size}:${mtime}`, mtime, at }
        })
      ),
      Effect.map(Option.some),
      Effect.catchIf(
        (e) => e._tag === "SystemError" && e.reason === "NotFound",
        () => Effect.succeed(Option.none())
      ),
      Effect.mapError(fail("inspect"))
    )

    /**
     * Reads the file under the lock: its entries (by key, in order), or none when it is as last
     * seen. The read is skipped when inode, size and mtime are those this process last saw and
     * they were seen after that mtime had passed (a write in the same millisecond would not
     * show, so such a sighting is not trusted: the file is read and compared instead).
     */
    const readStored = Effect.gen(function* () {
      const current = yield* Ref.get(state)
      const now = yield* look
      const unchanged = {
        bytes: Option.fromNullable(current.bytes),
        seen: Option.isSome(now) ? now.value : undefined,
        entries: Option.none<ReadonlyArray<readonly [string, SessionEntry]>>(),
        corrupt: Option.none<StoreCorrupt>(),
        // With `entries`: every key of the file in its order, and its values that are not entries.
        order: [] as ReadonlyArray<string>,
        unreadable: new Map<string, Unreadable>() as ReadonlyMap<string, Unreadable>
      }
      const last = current.seen
      const trusted = last !== undefined && last.at > last.mtime && current.bytes !== undefined
      if (trusted && unchanged.seen?.signature === last.signature) return { ...unchanged, seen: last }
      const bytes = yield* readBytes
      if (Option.isNone(bytes)) return { ...unchanged, bytes }
      if (sameBytes(bytes.value, current.bytes)) return unchanged
      const parsed = parseSessionsFile(new TextDecoder().decode(bytes.value))
      if (parsed._tag === "Unreadable") {
        const corrupt = yield* moveAside(parsed.problem, 0)
        return {
          ...unchanged,
          bytes: Option.none<Uint8Array>(),
          seen: undefined,
          corrupt: Option.some(corrupt)
        }
      }
      // Values that are not entries are kept as they are (DESIGN §7): reported, written back, not served.
      const unreadable = new Map(parsed.unreadable.map((u) => [u.key, u] as const))
      for (const u of parsed.unreadable) {
        const before = current.unreadable.get(u.key)
        if (before === undefined || !jsonEqual(before.value, u.value)) {
          yield* Effect.logWarning(
            `session entry cannot be served: ${u.problem} (kept as it is in ${filePath} until it is fixed)`
          ).pipe(Effect.annotateLogs({ path: filePath, sessionKey: u.key }))
        }
      }
      return {
        ...unchanged,
        bytes,
        entries: Option.some(parsed.entries),
        order: parsed.order,
        unreadable
      }
    })

    /** Temp files of writers that died mid-write (we hold the lock, so nobody is writing). */
    const removeLeftoverTemps = fs.readDirectory(directory).pipe(
      Effect.flatMap((names) =>
        Effect.forEach(
          names.filter((n) => n.startsWith("sessions.json.tmp-")),
          (n) => fs.remove(path.join(directory, n)),
          { discard: true }
        )
      ),
      Effect.catchAllCause((cause) => Effect.logDebug("could not remove leftover temp files", cause))
    )

    const load: Effect.Effect<Loaded, StorageError> = Effect.gen(function* () {
      yield* fs
        .makeDirectory(directory, { recursive: true })
        .pipe(Effect.mapError(fail("create the directory of")))
      return yield* withLock(
        fs,
        lock,
        Effect.gen(function* () {
          yield* removeLeftoverTemps
          const stored = yield* readStored
          const entries: Array<readonly [string, SessionEntry]> = []
          const unsaved: Array<string> = []
          for (const [key, raw] of Option.getOrElse(stored.entries, () => [])) {
            const entry = normalizeForeignReset(raw, undefined, undefined)
            if (entry !== raw || Option.isSome(stored.corrupt)) unsaved.push(key)
            entries.push([key, entry])
          }
          // File order, the keys whose values are not entries included (they are written back in place).
          const order = stored.unreadable.size > 0 ? stored.order : entries.map(([key]) => key)
          yield* Ref.set(state, {
            base: HashMap.fromIterable(entries),
            order,
            known: new Set(order),
            unreadable: stored.unreadable,
            bytes: Option.getOrUndefined(stored.bytes),
            seen: stored.seen
          })
          return { entries, corrupt: stored.corrupt, unsaved }
        })
      )
    })

    const persist = (
      snapshot: HashMap.HashMap<string, SessionEntry>,
      dirty: HashMap.HashMap<string, number>
    ): Effect.Effect<Persisted, StorageError> =>
      withLock(
        fs,
        lock,
        Effect.gen(function* () {
          const current = yield* Ref.get(state)
          const stored = yield* readStored
          let merged: HashMap.HashMap<string, SessionEntry>
          let order: ReadonlyArray<string>
          let known: ReadonlySet<string>
          let changed: Iterable<string>
          // Values that are not entries stay as they are, unless this process has an entry for the key.
          let unreadable: ReadonlyMap<string, Unreadable>
          if (Option.isNone(stored.entries)) {
            // The file is as this process last saw it (or gone): memory already holds its join,
            // and every key of the file is still in memory (only a read of a changed file drops keys).
            merged = snapshot
            changed = HashMap.keys(dirty)
            const added = [...HashMap.keys(dirty)].filter((key) => !current.known.has(key)).sort()
            order = added.length === 0 ? current.order : [...current.order, ...added]
            known = added.length === 0 ? current.known : new Set(order)
            unreadable = Option.isSome(stored.corrupt)
              ? new Map()
              : withoutEntries(current.unreadable, merged)
          } else {
            const result = mergeStored(stored.entries.value, current.base, snapshot, dirty)
            merged = result.merged
            unreadable = withoutEntries(stored.unreadable, merged)
            order = unreadable.size === 0 ? result.order : inFileOrder(stored.order, result.order, unreadable)
            known = new Set(order)
            for (const key of cache.keys()) if (!known.has(key)) cache.delete(key)
            changed = order
          }
          const bytes = serialize(merged, order, changed, unreadable)
          const wrote = !sameBytes(Option.getOrUndefined(stored.bytes), bytes)
          let seen = stored.seen
          if (wrote) {
            yield* writeAtomic(fs, { path: filePath, tmpPath, directory }, bytes)
            Metrics.storeFlushBytes.unsafeUpdate(bytes.length, [])
            // Not knowing the new identity only costs the next flush a read.
            seen = Option.getOrUndefined(yield* look.pipe(Effect.orElseSucceed(() => Option.none())))
          }
          yield* Ref.set(state, { base: merged, order, known, unreadable, bytes, seen })
          return {
            stored: Option.isSome(stored.entries) ? Option.some(merged) : Option.none(),
            wrote,
            corrupt: stored.corrupt
          }
        })
      )

    // Key → problem, made again only when the values that are not entries change (a turn
    // on a new key asks, so an unchanged set must cost nothing).
    let viewOf: ReadonlyMap<string, Unreadable> | undefined
    let view: ReadonlyMap<string, string> = new Map()
    const unreadableNow = Effect.map(Ref.get(state), (s): ReadonlyMap<string, string> => {
      if (s.unreadable !== viewOf) {
        viewOf = s.unreadable
        view = new Map([...s.unreadable.values()].map((u) => [u.key, u.problem]))
      }
      return view
    })

    return {
      load,
      persist,
      unreadable: unreadableNow,
      flushIntervalMs: Option.some(options.flushIntervalMs)
    }
  })

/** The values that are not entries, less the keys `merged` has an entry for. */
const withoutEntries = (
  unreadable: ReadonlyMap<string, Unreadable>,
  merged: HashMap.HashMap<string, SessionEntry>
): ReadonlyMap<string, Unreadable> => {
  let taken = false
  for (const key of unreadable.keys()) if (HashMap.has(merged, key)) taken = true
  if (!taken) return unreadable
  const out = new Map<string, Unreadable>()
  for (const [key, u] of unreadable) if (!HashMap.has(merged, key)) out.set(key, u)
  return out
}

/** The merged keys with the unreadable ones in their place: file order first, then what memory added. */
const inFileOrder = (
  fileOrder: ReadonlyArray<string>,
  mergedOrder: ReadonlyArray<string>,
  unreadable: ReadonlyMap<string, Unreadable>
): Array<string> => {
  const merged = new Set(mergedOrder)
  const out: Array<string> = []
  const placed = new Set<string>()
  for (const key of fileOrder) {
    if (merged.has(key) || unreadable.has(key)) {
      out.push(key)
      placed.add(key)
    }
  }
  for (const key of mergedOrder) if (!placed.has(key)) out.push(key)
  return out
}

/**
 * Merge-on-flush of whole files: each stored entry (normalized against what this process
 * knew of its key) joined with memory's; a key memory has that the file lost is dropped only
 * when this process did not change it since it last read the file.
 */
const mergeStored = (
  stored: ReadonlyArray<readonly [string, SessionEntry]>,
  base: HashMap.HashMap<string, SessionEntry>,
  memory: HashMap.HashMap<string, SessionEntry>,
  dirty: HashMap.HashMap<string, number>
): { merged: HashMap.HashMap<string, SessionEntry>; order: Array<string> } => {
  const out = HashMap.beginMutation(HashMap.empty<string, SessionEntry>())
  const order: Array<string> = []
  for (const [key, raw] of stored) {
    if (HashMap.has(out, key)) continue
    const known = Option.getOrUndefined(HashMap.get(base, key))
    const file = normalizeForeignReset(raw, known?.sessionId, known?.generation)
    const mine = Option.getOrUndefined(HashMap.get(memory, key))
    let entry: SessionEntry
    if (mine === undefined) entry = file
    else if (!HashMap.has(dirty, key) && known !== undefined && jsonEqual(file, known)) entry = mine
    else entry = mergeFileWithMemory(file, mine, known)
    HashMap.set(out, key, entry)
    order.push(key)
  }
  const added: Array<string> = []
  for (const [key, mine] of memory) {
    if (HashMap.has(out, key)) continue
    if (HashMap.has(base, key) && !HashMap.has(dirty, key)) continue
    HashMap.set(out, key, mine)
    added.push(key)
  }
  order.push(...added.sort())
  return { merged: HashMap.endMutation(out), order }
}
