/**
 * A `FileSystem` that wraps the one in context and can fail or interrupt its n-th call,
 * so tests can break a flush or an append at every step in turn.
 *
 * Every call of the `FileSystem` interface counts under its own name (`"open"`,
 * `"rename"`, `"writeFileString"`, …), and so does every call on a file handle it opened
 * (`"File.write"`, `"File.writeAll"`, `"File.sync"`, `"File.truncate"`, `"File.read"`,
 * `"File.readAlloc"`, `"File.stat"`). `File.seek` and closing a handle do no I/O in the
 * Node implementation and are not counted.
 */
import * as PlatformError from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"

/** What an armed fault does to the call it hits. */
export type FaultMode = "fail" | "interrupt"

/** Arms a fault: the `at`-th counted call from now (0-based) fails or is interrupted. */
export interface Fault {
  readonly at: number
  readonly mode: FaultMode
  /** The `SystemError` reason of a `"fail"` fault (default `"Unknown"`). */
  readonly reason?: PlatformError.SystemErrorReason
}

/** Scripts the faults of the `FaultFileSystem` and reports the calls it saw. */
export class FaultControl extends Context.Tag("@converge/testkit/FaultControl")<
  FaultControl,
  {
    /** Clears the call log and arms `fault`; it fires once, then the file system behaves normally. */
    readonly arm: (fault: Fault) => Effect.Effect<void>
    /** Cancels a fault that has not fired yet (the call log is kept). */
    readonly disarm: Effect.Effect<void>
    /** Names of the calls made since the last `arm` (or since the layer was built). */
    readonly calls: Effect.Effect<ReadonlyArray<string>>
    /** Whether the fault armed last has fired. */
    readonly triggered: Effect.Effect<boolean>
  }
>() {}

interface State {
  readonly calls: ReadonlyArray<string>
  readonly fault: Fault | undefined
  readonly triggered: boolean
}

type Action = { readonly _tag: "Pass" } | { readonly _tag: "Fire"; readonly fault: Fault }

const pass: Action = { _tag: "Pass" }

/**
 * An interrupt "the way it would really arrive": inside an interruptible region the call is
 * interrupted before it happens; inside an uninterruptible one the call goes on and the
 * fiber is interrupted when the region ends, exactly as an external `Fiber.interrupt` would.
 */
const interruptCaller: Effect.Effect<void> = Effect.checkInterruptible((interruptible) =>
  interruptible
    ? Effect.interrupt
    : Effect.withFiberRuntime<void>((fiber) => Fiber.interruptAsFork(fiber, fiber.id()))
)

/** Builds the wrapping `FileSystem` and its `FaultControl` around `underlying`. */
export const make = (
  underlying: FileSystem.FileSystem
): Effect.Effect<readonly [FileSystem.FileSystem, Context.Tag.Service<FaultControl>]> =>
  Effect.map(Ref.make<State>({ calls: [], fault: undefined, triggered: false }), (state) => {
    const gate = (name: string): Effect.Effect<void, PlatformError.PlatformError> =>
      Effect.flatMap(
        Ref.modify(state, (s): readonly [Action, State] => {
          const index = s.calls.length
          const calls = [...s.calls, name]
          if (s.fault !== undefined && s.fault.at === index) {
            return [
              { _tag: "Fire", fault: s.fault },
              { calls, fault: undefined, triggered: true }
            ]
          }
          return [pass, { ...s, calls }]
        }),
        (action) => {
          if (action._tag === "Pass") return Effect.void
          if (action.fault.mode === "interrupt") return interruptCaller
          return Effect.fail(
            new PlatformError.SystemError({
              reason: action.fault.reason ?? "Unknown",
              module: "FileSystem",
              method: name,
              description: `injected fault at call ${action.fault.at} (${name})`
            })
          )
        }
      )

    const guarded = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>) =>
      Effect.zipRight(gate(name), effect)

    const wrapFile = (file: FileSystem.File): FileSystem.File => ({
      [FileSystem.FileTypeId]: FileSystem.FileTypeId,
      fd: file.fd,
      get stat() {
        return guarded("File.stat", file.stat)
      },
      seek: (offset, from) => file.seek(offset, from),
      get sync() {
        return guarded("File.sync", file.sync)
      },
      read: (buffer) => guarded("File.read", file.read(buffer)),
      readAlloc: (size): Effect.Effect<Option.Option<Uint8Array>, PlatformError.PlatformError> =>
        guarded("File.readAlloc", file.readAlloc(size)),
      truncate: (length) => guarded("File.truncate", file.truncate(length)),
      write: (buffer) => guarded("File.write", file.write(buffer)),
      writeAll: (buffer) => guarded("File.writeAll", file.writeAll(buffer))
    })

    const fs = underlying
    const wrapped: FileSystem.FileSystem = {
      access: (path, options) => guarded("access", fs.access(path, options)),
      copy: (from, to, options) => guarded("copy", fs.copy(from, to, options)),
      copyFile: (from, to) => guarded("copyFile", fs.copyFile(from, to)),
      chmod: (path, mode) => guarded("chmod", fs.chmod(path, mode)),
      chown: (path, uid, gid) => guarded("chown", fs.chown(path, uid, gid)),
      exists: (path) => guarded("exists", fs.exists(path)),
      link: (from, to) => guarded("link", fs.link(from, to)),
      makeDirectory: (path, options) => guarded("makeDirectory", fs.makeDirectory(path, options)),
      makeTempDirectory: (options) => guarded("makeTempDirectory", fs.makeTempDirectory(options)),
      makeTempDirectoryScoped: (options) =>
        guarded("makeTempDirectoryScoped", fs.makeTempDirectoryScoped(options)),
      makeTempFile: (options) => guarded("makeTempFile", fs.makeTempFile(options)),
      makeTempFileScoped: (options) => guarded("makeTempFileScoped", fs.makeTempFileScoped(options)),
      open: (path, options) => Effect.map(guarded("open", fs.open(path, options)), wrapFile),
      readDirectory: (path, options) => guarded("readDirectory", fs.readDirectory(path, options)),
      readFile: (path) => guarded("readFile", fs.readFile(path)),
      readFileString: (path, encoding) => guarded("readFileString", fs.readFileString(path, encoding)),
      readLink: (path) => guarded("readLink", fs.readLink(path)),
      realPath: (path) => guarded("realPath", fs.realPath(path)),
      remove: (path, options) => guarded("remove", fs.remove(path, options)),
      rename: (from, to) => guarded("rename", fs.rename(from, to)),
      sink: (path, options) => Sink.unwrap(Effect.as(gate("sink"), fs.sink(path, options))),
      stat: (path) => guarded("stat", fs.stat(path)),
      stream: (path, options) => Stream.unwrap(Effect.as(gate("stream"), fs.stream(path, options))),
      symlink: (from, to) => guarded("symlink", fs.symlink(from, to)),
      truncate: (path, length) => guarded("truncate", fs.truncate(path, length)),
      utimes: (path, atime, mtime) => guarded("utimes", fs.utimes(path, atime, mtime)),
      watch: (path, options) => Stream.unwrap(Effect.as(gate("watch"), fs.watch(path, options))),
      writeFile: (path, data, options) => guarded("writeFile", fs.writeFile(path, data, options)),
      writeFileString: (path, data, options) =>
        guarded("writeFileString", fs.writeFileString(path, data, options))
    }

    const control = FaultControl.of({
      arm: (fault) => Ref.set(state, { calls: [], fault, triggered: false }),
      disarm: Ref.update(state, (s) => ({ ...s, fault: undefined })),
      calls: Effect.map(Ref.get(state), (s) => s.calls),
      triggered: Effect.map(Ref.get(state), (s) => s.triggered)
    })

    return [FileSystem.FileSystem.of(wrapped), control] as const
  })

/** Replaces the `FileSystem` in context by a fault-injecting wrapper, and provides its `FaultControl`. */
export const layer: Layer.Layer<FileSystem.FileSystem | FaultControl, never, FileSystem.FileSystem> =
  Layer.effectContext(
    Effect.flatMap(FileSystem.FileSystem, make).pipe(
      Effect.map(([fs, control]) =>
        Context.make(FileSystem.FileSystem, fs).pipe(Context.add(FaultControl, control))
      )
    )
  )
