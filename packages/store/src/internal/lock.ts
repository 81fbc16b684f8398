/**
 * The cross-process write lock `sessions.json.lock`: created exclusively, holding the pid,
 * the host, a random owner token and the time it was taken. A lock whose owner process is
 * gone, or that is older than its bound, is reclaimed; acquisition is bounded.
 */
import * as os from "node:os"
import type { FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { StorageError } from "@converge/domain"
import { Clock, Duration, Effect, Option } from "effect"

/** How a lock is taken. */
export interface LockOptions {
  /** The lock file: `<sessionsDir>/sessions.json.lock`. */
  readonly path: string
  /** This runtime's owner token (two runtimes in one process are two owners). */
  readonly owner: string
  /** Give up after this long, with a `StorageError` naming the holder. */
  readonly timeoutMs: number
  /** A lock older than this is taken to be abandoned, even when its process still runs. */
  readonly staleMs: number
}

/** What a lock file says. */
interface LockInfo {
  readonly pid: number
  readonly host: string
  readonly owner: string
  readonly createdAt: number
}

const hostname = os.hostname()

const isNotFound = (e: PlatformError): boolean => e._tag === "SystemError" && e.reason === "NotFound"
const isAlreadyExists = (e: PlatformError): boolean =>
  e._tag === "SystemError" && e.reason === "AlreadyExists"

const storageError = (path: string, what: string) => (e: PlatformError) =>
  new StorageError({ path, message: `${what} ${path}: ${e.message}` })

const parseInfo = (text: string): LockInfo | undefined => {
  try {
    const u: unknown = JSON.parse(text)
    if (typeof u !== "object" || u === null) return undefined
    const r: Record<string, unknown> = { ...u }
    const { pid, host, owner, createdAt } = r
    if (typeof pid !== "number" || typeof owner !== "string" || typeof createdAt !== "number")
      return undefined
    return { pid, owner, createdAt, host: typeof host === "string" ? host : hostname }
  } catch {
    return undefined
  }
}

/** Whether the process `pid` on this host still runs (a signal-0 probe; EPERM means it does). */
const processAlive = (pid: number): boolean => {
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return !(e instanceof Error && "code" in e && e.code === "ESRCH")
  }
}

/**
 * Runs `use` while holding the lock. Waits (with `Effect.sleep`, so `TestClock` drives it)
 * while another live owner holds it, reclaims it from a dead or stale owner, and fails with
 * `StorageError` when it cannot be had within `timeoutMs`. The lock is released afterwards,
 * whatever `use` did.
 */
export const withLock = <A, E, R>(
  fs: FileSystem.FileSystem,
  options: LockOptions,
  use: Effect.Effect<A, E, R>
): Effect.Effect<A, E | StorageError, R> =>
  // Only the waits are interruptible: a lock file is never created without being released.
  Effect.uninterruptibleMask((restore) =>
    Effect.zipRight(
      acquire(fs, options, (wait) => restore(wait)),
      restore(use).pipe(Effect.ensuring(release(fs, options)))
    )
  )

const acquire = (
  fs: FileSystem.FileSystem,
  options: LockOptions,
  interruptible: (wait: Effect.Effect<void>) => Effect.Effect<void>
): Effect.Effect<void, StorageError> =>
  Effect.gen(function* () {
    const { path, owner } = options
    const start = yield* Clock.currentTimeMillis
    let delay = 2
    while (true) {
      const now = yield* Clock.currentTimeMillis
      const created = yield* tryCreate(fs, path, { pid: process.pid, host: hostname, owner, createdAt: now })
      if (created) return
      const text = yield* fs.readFileString(path).pipe(
        Effect.map(Option.some),
        Effect.catchIf(isNotFound, () => Effect.succeed(Option.none<string>())),
        Effect.mapError(storageError(path, "cannot read the lock"))
      )
      if (Option.isNone(text)) continue
      const info = parseInfo(text.value)
      let stale: boolean
      let holder: string
      if (info === undefined) {
        // Created but never filled (its owner died in between, or is writing it now): judged by its mtime.
        const modified = yield* fs.stat(path).pipe(
          Effect.map((stat) =>
            Option.getOrElse(
              Option.map(stat.mtime, (d) => d.getTime()),
              () => now
            )
          ),
          Effect.orElseSucceed(() => now)
        )
        stale = now - modified >= options.staleMs
        holder = `an owner that has not written the lock file since ${new Date(modified).toISOString()}`
      } else {
        stale =
          info.owner === owner ||
          now - info.createdAt >= options.staleMs ||
          (info.host === hostname && !processAlive(info.pid))
        holder = `pid ${info.pid} on ${info.host} (owner ${info.owner}) since ${new Date(info.createdAt).toISOString()}`
      }
      if (stale) {
        yield* reclaim(fs, path, owner, text.value)
        continue
      }
      if (now - start >= options.timeoutMs) {
        return yield* Effect.fail(
          new StorageError({
            path,
            message: `could not take the lock ${path} within ${options.timeoutMs} ms: it is held by ${holder}; remove the file if that process is gone`
          })
        )
      }
      yield* interruptible(
        Effect.sleep(Duration.millis(Math.min(delay, Math.max(1, start + options.timeoutMs - now))))
      )
      delay = Math.min(delay * 2, 50)
    }
  })

/** Creates the lock file exclusively; false when it already exists. */
const tryCreate = (
  fs: FileSystem.FileSystem,
  path: string,
  info: LockInfo
): Effect.Effect<boolean, StorageError> =>
  fs.open(path, { flag: "wx", mode: 0o600 }).pipe(
    Effect.flatMap((file) =>
      file.writeAll(new TextEncoder().encode(JSON.stringify(info))).pipe(
        // A lock we created but could not fill is removed, so nobody waits on it.
        Effect.onError(() => fs.remove(path).pipe(Effect.catchAllCause(() => Effect.void)))
      )
    ),
    Effect.scoped,
    Effect.as(true),
    Effect.catchIf(isAlreadyExists, () => Effect.succeed(false)),
    Effect.mapError(storageError(path, "cannot create the lock"))
  )

/**
 * Takes an abandoned lock away: renames it to a name of our own (atomic, so only one
 * reclaimer gets it), then checks that what we took is the lock we judged; if another owner
 * created a fresh lock in between, it is put back.
 */
const reclaim = (
  fs: FileSystem.FileSystem,
  path: string,
  owner: string,
  judged: string
): Effect.Effect<void, StorageError> =>
  Effect.gen(function* () {
    const aside = `${path}.stale-${owner}`
    const moved = yield* fs.rename(path, aside).pipe(
      Effect.as(true),
      Effect.catchIf(isNotFound, () => Effect.succeed(false)),
      Effect.mapError(storageError(path, "cannot reclaim the lock"))
    )
    if (!moved) return
    const taken = yield* fs.readFileString(aside).pipe(Effect.orElseSucceed(() => judged))
    if (taken !== judged) {
      const exists = yield* fs.exists(path).pipe(Effect.orElseSucceed(() => true))
      if (!exists) yield* fs.rename(aside, path).pipe(Effect.catchAllCause(() => Effect.void))
      else yield* fs.remove(aside).pipe(Effect.catchAllCause(() => Effect.void))
      return
    }
    yield* fs.remove(aside).pipe(Effect.catchAllCause(() => Effect.void))
  }).pipe(Effect.uninterruptible)

/**
 * Removes the lock if it is still ours, trying again at once if a call fails (a lock left
 * behind would make other owners wait for its bound); a lock still left is reclaimed by our
 * next acquisition, which knows its own token.
 */
const release = (fs: FileSystem.FileSystem, options: LockOptions): Effect.Effect<void> =>
  fs.readFileString(options.path).pipe(
    Effect.flatMap((text) =>
      parseInfo(text)?.owner === options.owner ? fs.remove(options.path) : Effect.void
    ),
    Effect.catchIf(isNotFound, () => Effect.void),
    Effect.retry({ times: 2 }),
    Effect.catchAllCause((cause) =>
      Effect.logWarning("could not release the sessions lock", cause).pipe(
        Effect.annotateLogs("path", options.path)
      )
    )
  )
