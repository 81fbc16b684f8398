/**
 * `converge import|export --sessions-dir DIR`: moves a session store between OpenClaw's
 * `sessions.json` and the PostgreSQL database of `CONVERGE_DATABASE_URL` (DESIGN §9).
 * Import merges each entry by the database's merge statement, so it is idempotent and safe
 * beside running gateways; export writes a new `sessions.json` and never replaces one.
 * Transcripts stay `<sessionId>.jsonl` files of the directory.
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
}

/** Merges `<dir>/sessions.json` into the database. */
export const importDir = (dir: string, url: string | undefined, env: Record<string, string | undefined>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const file = path.join(path.resolve(dir), "sessions.json")
    const text = yield* fs
      .readFileString(file)
      .pipe(Effect.mapError((e) => CliError.of(`cannot read ${file}: ${e.message}`)))
    const database = yield* databaseUrlOf(url, env)
    const pg = yield* loadPostgres
    const imported = yield* pg.importSessionsFile(database, file, text).pipe(
      Effect.provide(pg.Database.layer({ url: database, maxConnections: 2 })),
      Effect.mapError((e) => CliError.of(e.message))
    )
    return { file, ...imported } satisfies ImportReport
  })

/** Writes the database's entries as `<dir>/sessions.json` (which must not exist yet). */
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
    const text = yield* pg.exportSessionsFile(database).pipe(
      Effect.provide(pg.Database.layer({ url: database, maxConnections: 2 })),
      Effect.mapError((e) => CliError.of(e.message))
    )
    const temp = `${file}.tmp-${process.pid}`
    yield* fs.makeDirectory(root, { recursive: true }).pipe(
      Effect.zipRight(fs.writeFileString(temp, text, { flag: "wx" })),
      Effect.zipRight(fs.rename(temp, file)),
      Effect.mapError((e) => CliError.of(`cannot write ${file}: ${e.message}`))
    )
    return { file, sessions: Object.keys(JSON.parse(text)).length }
  })
