/**
 * Atomic replacement of a file: a temp file in the same directory, write, fsync, rename
 * over the target, fsync the directory. Uninterruptible, so the target is always either
 * the old content or the new one, never empty or partial.
 */
import type { FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { StorageError } from "@converge/domain"
import { Effect } from "effect"

/** Replaces `path` with `bytes` (file mode 0600) through `tmpPath`, which must be in the same directory. */
export const writeAtomic = (
  fs: FileSystem.FileSystem,
  options: { readonly path: string; readonly tmpPath: string; readonly directory: string },
  bytes: Uint8Array
): Effect.Effect<void, StorageError> => {
  const { path, tmpPath, directory } = options
  const fail = (what: string) => (e: PlatformError) =>
    new StorageError({ path, message: `cannot write ${path} (${what}): ${e.message}` })
  const writeTemp = Effect.scoped(
    Effect.gen(function* () {
      const file = yield* fs.open(tmpPath, { flag: "w", mode: 0o600 })
      yield* file.writeAll(bytes)
      yield* file.sync
    })
  ).pipe(Effect.mapError(fail(`writing ${tmpPath}`)))
  // Some file systems cannot open or sync a directory; the rename has happened by then.
  const syncDirectory = Effect.scoped(
    Effect.flatMap(fs.open(directory, { flag: "r" }), (dir) => dir.sync)
  ).pipe(Effect.catchAllCause((cause) => Effect.logDebug("could not fsync the sessions directory", cause)))
  return writeTemp.pipe(
    Effect.zipRight(fs.rename(tmpPath, path).pipe(Effect.mapError(fail("rename")))),
    Effect.onError(() => fs.remove(tmpPath).pipe(Effect.catchAllCause(() => Effect.void))),
    Effect.zipRight(syncDirectory),
    Effect.uninterruptible
  )
}
