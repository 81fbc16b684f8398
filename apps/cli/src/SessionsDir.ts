/**
 * A sessions directory as the CLI finds it (`sessions.json` beside `<sessionId>.jsonl`
 * transcripts), checked before anything runs, and the offline view of it: the runner's own
 * `Reconciler` folding the transcripts into a store that never touches the directory.
 */
import { FileSystem, Path } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Effect, Either, Layer, Logger, LogLevel, Option, ParseResult, Schema } from "effect"
import { defaults, SessionEntry, SessionKey, StorageError } from "@converge/domain"
import { Reconciler, RunnerConfig } from "@converge/runner"
import { parseSessionsFile, SessionStore, type Unreadable } from "@converge/store"
import { Transcript } from "@converge/transcript"
import { CliError } from "./CliError.js"

/** The name of the store file in a sessions directory. */
export const SESSIONS_FILE = "sessions.json"

/** What `sessions.json` holds, as read. */
export type SessionsFileContent =
  | { readonly _tag: "Missing" }
  | {
      readonly _tag: "Ok"
      readonly text: string
      readonly entries: ReadonlyArray<readonly [string, SessionEntry]>
      /** Keys whose value is not a session entry, and why. */
      readonly bad: ReadonlyArray<{ readonly key: string; readonly reason: string }>
    }
  | { readonly _tag: "Unreadable"; readonly text: string; readonly problem: string }

/** A checked sessions directory. */
export interface SessionsDirectory {
  /** Absolute path of the directory. */
  readonly dir: string
  /** Absolute path of its `sessions.json`. */
  readonly file: string
  readonly content: SessionsFileContent
  /** The names of its `*.jsonl` files, without the suffix. */
  readonly transcripts: ReadonlyArray<string>
}

/** The entry of `key` in `sessions.json` as read, if any. */
export const entryInFile = (d: SessionsDirectory, key: string): SessionEntry | undefined =>
  d.content._tag === "Ok" ? d.content.entries.find(([k]) => k === key)?.[1] : undefined

/** The directory a command works on: `--sessions-dir`, else `CONVERGE_SESSIONS_DIR`, else the default. */
export const sessionsDirOf = (
  option: Option.Option<string>,
  env: Record<string, string | undefined>
): string =>
  Option.getOrElse(option, () => {
    const fromEnv = env.CONVERGE_SESSIONS_DIR
    return fromEnv !== undefined && fromEnv !== "" ? fromEnv : defaults.sessionsDir
  })

/** Why each value that is not a session entry is not one, in a few words. */
const whyNotEntries = (unreadable: ReadonlyArray<Unreadable>) =>
  unreadable.map(({ key, value }) => {
    const decoded = Schema.decodeUnknownEither(SessionEntry)(value)
    const issue = Either.isLeft(decoded)
      ? ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
      : undefined
    const reason =
      issue === undefined
        ? "not a session entry"
        : issue.path.length === 0
          ? "not an object"
          : `${issue.path.map(String).join(".")} ${issue.message.replace(/\s*\n\s*/g, " ")}`
    return { key, reason }
  })

const describe = (e: PlatformError): string =>
  e._tag === "SystemError" ? `${e.reason}: ${e.message}` : e.message

/** Checks that `dir` exists, is a directory and looks like a sessions directory; reads its `sessions.json`. */
export const openSessionsDir = (
  dir: string
): Effect.Effect<SessionsDirectory, CliError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const absolute = path.resolve(dir)
    const info = yield* fs
      .stat(absolute)
      .pipe(
        Effect.mapError((e) =>
          e._tag === "SystemError" && e.reason === "NotFound"
            ? CliError.of(`no sessions directory at ${absolute}: it does not exist`)
            : CliError.of(`cannot read the sessions directory ${absolute}: ${describe(e)}`)
        )
      )
    if (info.type !== "Directory") return yield* CliError.of(`${absolute} is not a directory`)
    const names = yield* fs
      .readDirectory(absolute)
      .pipe(
        Effect.mapError((e) => CliError.of(`cannot list the sessions directory ${absolute}: ${describe(e)}`))
      )
    const transcripts = names.filter((n) => n.endsWith(".jsonl")).map((n) => n.slice(0, -".jsonl".length))
    const file = path.join(absolute, SESSIONS_FILE)
    if (!names.includes(SESSIONS_FILE) && transcripts.length === 0) {
      return yield* CliError.of(
        `${absolute} is not a sessions directory: it holds neither ${SESSIONS_FILE} nor any <sessionId>.jsonl transcript`
      )
    }
    const content: SessionsFileContent = names.includes(SESSIONS_FILE)
      ? yield* fs.readFileString(file).pipe(
          Effect.mapError((e) => CliError.of(`cannot read ${file}: ${describe(e)}`)),
          Effect.map((text): SessionsFileContent => {
            const parsed = parseSessionsFile(text)
            return parsed._tag === "Unreadable"
              ? { _tag: "Unreadable", text, problem: parsed.problem }
              : { _tag: "Ok", text, entries: parsed.entries, bad: whyNotEntries(parsed.unreadable) }
          })
        )
      : { _tag: "Missing" }
    return { dir: absolute, file, content, transcripts }
  })

/** Fails when `sessions.json` cannot be read: the read-only commands say so and write nothing. */
export const requireReadable = (d: SessionsDirectory): Effect.Effect<void, CliError> =>
  d.content._tag === "Unreadable"
    ? Effect.fail(
        CliError.of(
          `${d.file} cannot be read: ${d.content.problem}; nothing was written (converge repair rebuilds it from the transcripts)`
        )
      )
    : Effect.void

/** Fails with the schema's message when `key` is not a session key. */
export const checkKey = (key: string): Effect.Effect<void, CliError> =>
  Either.match(Schema.decodeUnknownEither(SessionKey)(key), {
    onLeft: () =>
      Effect.fail(
        CliError.of(
          `invalid session key ${JSON.stringify(key.slice(0, 64))}: 1–256 characters of A-Z a-z 0-9 : _ . @ + -`
        )
      ),
    onRight: () => Effect.void
  })

/** Reads transcripts without writing: no `.fold` resume files. */
const readOnlyTranscripts = (dir: string) =>
  Transcript.layer({ sessionsDir: dir, leaseMs: defaults.leaseMs, resumeMinBytes: Number.MAX_SAFE_INTEGER })

/** The longest a timer may sleep: the store flushes only when told to (or when its scope closes). */
export const NEVER_MS = 2 ** 31 - 1

/**
 * The store of `storeDir` (its `sessions.json`, under the lock, merged on flush), the
 * transcripts of `transcriptsDir` read without writing, and the `Reconciler` over both.
 */
export const recoveryLayer = (storeDir: string, transcriptsDir: string) =>
  Reconciler.Default.pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        SessionStore.layerFile({ sessionsDir: storeDir, flushIntervalMs: NEVER_MS }),
        readOnlyTranscripts(transcriptsDir),
        RunnerConfig.layer({ sessionsDir: transcriptsDir })
      )
    )
  )

/**
 * Runs `use` on an offline view of `d`: a copy of its `sessions.json` in a temporary
 * directory (loaded by the file store exactly as a gateway would load the original, and
 * thrown away afterwards) and its transcripts read in place. Nothing in `d` is written.
 */
export const withOfflineView = <A, E>(
  d: SessionsDirectory,
  use: (shadowDir: string) => Effect.Effect<A, E, Reconciler | SessionStore | Transcript>
): Effect.Effect<A, Exclude<E, StorageError> | CliError, FileSystem.FileSystem | Path.Path> =>
  Effect.scoped(
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      const shadow = yield* fs
        .makeTempDirectoryScoped({ prefix: "converge-view-" })
        .pipe(Effect.mapError((e) => CliError.of(`cannot create a temporary directory: ${describe(e)}`)))
      if (d.content._tag !== "Missing") {
        yield* fs
          .writeFileString(path.join(shadow, SESSIONS_FILE), d.content.text)
          .pipe(Effect.mapError((e) => CliError.of(`cannot copy ${d.file} to ${shadow}: ${describe(e)}`)))
      }
      return yield* use(shadow).pipe(
        Effect.provide(recoveryLayer(shadow, d.dir)),
        Effect.catchIf(
          (e): e is StorageError => e instanceof StorageError,
          (e) => Effect.fail(CliError.of(e.message.replaceAll(shadow, d.dir)))
        ),
        // The view's own store logs (a moved-aside copy, its lock) are about the temporary copy.
        Logger.withMinimumLogLevel(LogLevel.None)
      )
    })
  )
