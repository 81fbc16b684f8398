/**
 * What `SessionStore` needs from a place that keeps entries: an initial load, and a
 * persist step that merges a snapshot of memory with what is stored and writes the result.
 */
import type { SessionEntry, StorageError, StoreCorrupt } from "@converge/domain"
import { Effect, type HashMap, Option } from "effect"

/** What a backend holds at start. */
export interface Loaded {
  readonly entries: ReadonlyArray<readonly [string, SessionEntry]>
  readonly corrupt: Option.Option<StoreCorrupt>
  /** Entries that differ from what is stored (normalized resets, entries kept from a corrupt file). */
  readonly unsaved: ReadonlyArray<string>
}

/** The outcome of one persist step. */
export interface Persisted {
  /** What is stored now, when it differs from the snapshot given (another writer, a reset); else none. */
  readonly stored: Option.Option<HashMap.HashMap<string, SessionEntry>>
  /**
   * Whether `stored` holds every stored key (a whole file), so a key missing from it was
   * removed; false when it holds only the keys just persisted (a database's returned rows).
   */
  readonly complete?: boolean
  /** Whether the file was written. */
  readonly wrote: boolean
  /** Set when the stored file had to be moved aside during this step. */
  readonly corrupt: Option.Option<StoreCorrupt>
}

/** A place that keeps entries. */
export interface Backend {
  readonly load: Effect.Effect<Loaded, StorageError>
  /** Merges `snapshot` (memory; `dirty` = keys changed since the last persist) with what is stored, and stores it. */
  readonly persist: (
    snapshot: HashMap.HashMap<string, SessionEntry>,
    dirty: HashMap.HashMap<string, number>
  ) => Effect.Effect<Persisted, StorageError>
  /** Keys whose stored value is not a session entry, and why: kept as they are, not served. */
  readonly unreadable: Effect.Effect<ReadonlyMap<string, string>>
  /** The write-behind interval; none for a backend that keeps nothing (memory). */
  readonly flushIntervalMs: Option.Option<number>
  /**
   * The stored entry of one key, as other processes may have changed it since the load: for a
   * backend shared by live processes (a database). Absent: this process's memory is current.
   */
  readonly reload?: (key: string) => Effect.Effect<Option.Option<SessionEntry>, StorageError>
}

/** The memory backend: nothing is stored beyond the store's own `Ref`. */
export const memoryBackend: Backend = {
  load: Effect.succeed({ entries: [], corrupt: Option.none(), unsaved: [] }),
  persist: () => Effect.succeed({ stored: Option.none(), wrote: false, corrupt: Option.none() }),
  unreadable: Effect.succeed(new Map()),
  flushIntervalMs: Option.none()
}
