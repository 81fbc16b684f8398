/**
 * `converge import|export --sessions-dir DIR`: moves a session store between OpenClaw's
 * `sessions.json` and the PostgreSQL database of `CONVERGE_DATABASE_URL` (DESIGN §9).
 * with the transcripts (`<sessionId>.jsonl`). Import merges each entry by the database's
 * merge statement and adds each transcript line at its seq, keeping the rows already there,
 * so it is idempotent and safe beside running gateways; export writes a new `sessions.json`
 * and a `.jsonl` per transcript, and never replaces a file.
 */
import { FileSystem, Path } from "@effect/platform"
import { Effect } from "effect"
import { CliError } from "./CliError.js"

/** The runtime's PostgreSQL package, imported when a command needs it. */
const loadPostgres = Effect.promise(() => import("@converge/postgres"))

const databaseUrlOf = (url: string | undefined, env: Record<string, string | undefined>) =>
  Effect.suspend(() => {
    const chosen = url ?? env.CONVERGE_DATABASE_URL
    if (chosen === undefined || chosen === "")
      return Effect.fail(CliError.of("no database: set CONVERGE_DATABASE_URL or pass --database-url"))
    return Effect.succeed(chosen)
  })

/** What `converge import` did. */
export interface ImportReport {
  readonly file: string
  readonly merged: number
  readonly changed: number
  readonly unreadable: ReadonlyArray<{ readonly key: string; readonly problem: string }>
  /** Transcripts read, and the entries they added (0 on a second import). */
  readonly transcripts: number
  readonly entries: number
}

/** Merges `<dir>/sessions.json` and the directory's transcripts into the database. */
export const importDir = (dir: string, url: string | undefined, env: Record<string, string | undefined>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const root = path.resolve(dir)
    const file = path.join(root, "sessions.json")
    const text = yield* fs
      .readFileString(file)
      .pipe(Effect.mapError((e) => CliError.of(`cannot read ${file}: ${e.message}`)))
    const names = yield* fs
      .readDirectory(root)
      .pipe(Effect.mapError((e) => CliError.of(`cannot list ${root}: ${e.message}`)))
    const database = yield* databaseUrlOf(url, env)
    const pg = yield* loadPostgres
    return yield* Effect.gen(function* () {
      const imported = yield* pg.importSessionsFile(database, file, text)
      let entries = 0
      const transcripts = names.filter((n) => n.endsWith(".jsonl")).sort()
      for (const name of transcripts) {
        const transcript = path.join(root, name)
        const body = yield* fs
          .readFileString(transcript)
          .pipe(Effect.mapError((e) => CliError.of(`cannot read ${transcript}: ${e.message}`)))
        const r = yield* pg.importTranscriptText(database, name.slice(0, -".jsonl".length), body)
        entries += r.inserted
      }
      return { file, ...imported, transcripts: transcripts.length, entries } satisfies ImportReport
    }).pipe(
      Effect.provide(pg.Database.layer({ url: database, maxConnections: 2 })),
      Effect.mapError((e) => (e instanceof CliError ? e : CliError.of(e.message)))
    )
  })

/**
 * Writes the database's entries as `<dir>/sessions.json` (which must not exist yet) and each
 * transcript as `<dir>/<sessionId>.jsonl` (one that exists is left as it is, and reported).
 */
export const exportDir = (dir: string, url: string | undefined, env: Record<string, string | undefined>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const root = path.resolve(dir)
    const file = path.join(root, "sessions.json")
    const database = yield* databaseUrlOf(url, env)
    if (yield* fs.exists(file).pipe(Effect.orElseSucceed(() => false)))
      return yield* CliError.of(`${file} exists; export writes a new sessions.json, move it away first`)
    const pg = yield* loadPostgres
    /** Writes `text` as `target` through a temporary file; fails when `target` exists. */
    const writeNew = (target: string, text: string) => {
      const temp = `${target}.tmp-${process.pid}`
      return fs.makeDirectory(root, { recursive: true }).pipe(
        Effect.zipRight(fs.writeFileString(temp, text, { flag: "wx" })),
        Effect.zipRight(fs.link(temp, target)),
        Effect.ensuring(fs.remove(temp).pipe(Effect.ignore)),
        Effect.mapError((e) => CliError.of(`cannot write ${target}: ${e.message}`))
      )
    }
    return yield* Effect.gen(function* () {
      const text = yield* pg.exportSessionsFile(database)
      let transcripts = 0
      const skipped: Array<string> = []
      for (const sessionId of yield* pg.listTranscripts(database)) {
        const target = path.join(root, `${sessionId}.jsonl`)
        if (yield* fs.exists(target).pipe(Effect.orElseSucceed(() => false))) {
          skipped.push(target)
          continue
        }
        const body = yield* pg.exportTranscriptText(database, sessionId)
        if (body === undefined) continue
        yield* writeNew(target, body)
        transcripts++
      }
      // sessions.json last: a directory with it is a complete export.
      yield* writeNew(file, text)
      return { file, sessions: Object.keys(JSON.parse(text)).length, transcripts, skipped }
    }).pipe(
      Effect.provide(pg.Database.layer({ url: database, maxConnections: 2 })),
      Effect.mapError((e) => (e instanceof CliError ? e : CliError.of(e.message)))
    )
  })
