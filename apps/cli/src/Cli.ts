/**
 * The `converge` command (DESIGN §7): `status`, `sessions`, `compact`, `repair`, `demo` and
 * `gateway`, built with `@effect/cli`. Tables for people, `--json` for machines; a failure
 * is one line on stderr and a non-zero exit code.
 */
import { Args, Command, Options, ValidationError } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import type { Teardown } from "@effect/platform/Runtime"
import { Cause, Console, Effect, Exit, Logger, LogLevel, Option } from "effect"
import { CliError, EXIT_ERROR, EXIT_UNFIXED, ExitCode } from "./CliError.js"
import { compact, renderCompacted } from "./Compact.js"
import { demo } from "./Demo.js"
import { runGateway } from "./Gateway.js"
import { offlineSessions, offlineStatus } from "./Offline.js"
import { renderRepair, renderSessions, renderStatus } from "./Render.js"
import { withProgress } from "./Progress.js"
import { repair, repairDryRun } from "./Repair.js"
import { openSessionsDir, sessionsDirOf } from "./SessionsDir.js"
import { exportDir, importDir } from "./Transfer.js"

/** The version `converge --version` prints. */
export const VERSION = "0.1.0"

const sessionsDir = Options.text("sessions-dir").pipe(
  Options.withPseudoName("DIR"),
  Options.withDescription(
    "the sessions directory (default: $CONVERGE_SESSIONS_DIR, else ./.converge/sessions)"
  ),
  Options.optional
)
const json = Options.boolean("json").pipe(
  Options.withDescription("print JSON (the HTTP API's shapes) instead of a table")
)
const key = Args.text({ name: "key" }).pipe(Args.withDescription("the session key"))

const print = (value: unknown) => Console.log(JSON.stringify(value, null, 2))

const status = Command.make("status", { key, sessionsDir, json }, (o) =>
  Effect.gen(function* () {
    const d = yield* openSessionsDir(sessionsDirOf(o.sessionsDir, process.env))
    const s = yield* offlineStatus(d, o.key)
    yield* o.json ? print(s) : Console.log(renderStatus(s))
  })
).pipe(
  Command.withDescription(
    "The status of one session, read offline: its transcript folded in memory, nothing written (GET /v1/sessions/{key}/status)."
  )
)

const sessions = Command.make("sessions", { sessionsDir, json }, (o) =>
  Effect.gen(function* () {
    const d = yield* openSessionsDir(sessionsDirOf(o.sessionsDir, process.env))
    const view = yield* withProgress(o.json, (onProgress) => offlineSessions(d, onProgress))
    yield* o.json ? print({ sessions: view.sessions }) : Console.log(renderSessions(view))
  })
).pipe(Command.withDescription("Every session, read offline; nothing written (GET /v1/sessions)."))

const compactCommand = Command.make(
  "compact",
  {
    key,
    sessionsDir,
    json,
    instructions: Options.text("instructions").pipe(
      Options.withPseudoName("TEXT"),
      Options.withDescription("what the summary should keep"),
      Options.optional
    ),
    waitMs: Options.integer("wait-ms").pipe(
      Options.withPseudoName("MS"),
      Options.withDescription("how long to wait for the result (default: the compaction's hard timeout)"),
      Options.optional
    )
  },
  (o) =>
    Effect.gen(function* () {
      const done = yield* compact(o.key, {
        sessionsDir: sessionsDirOf(o.sessionsDir, process.env),
        instructions: Option.getOrUndefined(o.instructions),
        waitMs: Option.getOrUndefined(o.waitMs),
        env: process.env
      })
      yield* o.json ? print(done.result) : Console.log(renderCompacted(done))
      if (done.result.state === "failed" || done.result.state === "pending") {
        return yield* new ExitCode({ code: EXIT_ERROR })
      }
    })
).pipe(
  Command.withDescription(
    "Compacts one session through the runtime (CONVERGE_MODEL, local by default) and prints tokens before and after."
  )
)

const repairCommand = Command.make(
  "repair",
  {
    sessionsDir,
    json,
    dryRun: Options.boolean("dry-run").pipe(Options.withDescription("print what would change; write nothing"))
  },
  (o) =>
    Effect.gen(function* () {
      const d = yield* openSessionsDir(sessionsDirOf(o.sessionsDir, process.env))
      const report = yield* withProgress(o.json, (onProgress) =>
        o.dryRun ? repairDryRun(d, onProgress) : repair(d, onProgress)
      )
      yield* o.json ? print(report) : Console.log(renderRepair(report))
      if (report.unfixed > 0) return yield* new ExitCode({ code: EXIT_UNFIXED })
    })
).pipe(
  Command.withDescription(
    "Folds every transcript into sessions.json (backup first, under the store's lock): raises what the transcripts prove, never lowers a count, keeps what it does not own. Exit 2 when problems remain that it cannot fix."
  )
)

const demoCommand = Command.make("demo", {}, () =>
  Effect.asVoid(demo({ live: process.stdout.isTTY === true }))
).pipe(
  Command.withDescription(
    "A real-time run, in a temporary directory, of a turn that times out while its compaction runs on, until /status converges."
  )
)

const gateway = Command.make("gateway", { sessionsDir }, (o) =>
  Effect.gen(function* () {
    const env = Option.match(o.sessionsDir, {
      onNone: () => process.env,
      onSome: (dir) => ({ ...process.env, CONVERGE_SESSIONS_DIR: dir })
    })
    const code = yield* runGateway(env)
    if (code !== 0) return yield* new ExitCode({ code })
  })
).pipe(
  Command.withDescription(
    "Starts the gateway (the same as npm start); configured by the CONVERGE_* variables."
  )
)

const databaseUrl = Options.text("database-url").pipe(
  Options.withPseudoName("URL"),
  Options.withDescription("the PostgreSQL database (default: $CONVERGE_DATABASE_URL)"),
  Options.optional
)

const importCommand = Command.make("import", { sessionsDir, databaseUrl, json }, (o) =>
  Effect.gen(function* () {
    const r = yield* importDir(
      sessionsDirOf(o.sessionsDir, process.env),
      Option.getOrUndefined(o.databaseUrl),
      process.env
    )
    if (o.json) return yield* print(r)
    yield* Console.log(
      `imported ${r.file}: ${r.merged} entries merged, ${r.changed} rows changed; ${r.transcripts} transcripts, ${r.entries} transcript entries added`
    )
    for (const u of r.unreadable) yield* Console.log(`  not imported: ${u.problem}`)
  })
).pipe(
  Command.withDescription(
    "Merges the directory's sessions.json and transcripts into the database (CONVERGE_DATABASE_URL); idempotent, safe beside running gateways."
  )
)

const exportCommand = Command.make("export", { sessionsDir, databaseUrl, json }, (o) =>
  Effect.gen(function* () {
    const r = yield* exportDir(
      sessionsDirOf(o.sessionsDir, process.env),
      Option.getOrUndefined(o.databaseUrl),
      process.env
    )
    if (o.json) return yield* print(r)
    yield* Console.log(`exported ${r.sessions} sessions to ${r.file}, and ${r.transcripts} transcripts`)
    for (const s of r.skipped) yield* Console.log(`  not written (it exists): ${s}`)
  })
).pipe(
  Command.withDescription(
    "Writes the database's session entries as a new sessions.json in the directory, and each transcript as <sessionId>.jsonl."
  )
)

const root = Command.make("converge", {}, () =>
  Console.log(
    [
      "converge: the runner core of an AI-assistant gateway",
      "",
      "  converge status <key>      one session's status (offline, read-only)",
      "  converge sessions          every session (offline, read-only)",
      "  converge compact <key>     compact one session now",
      "  converge repair            fold the transcripts into sessions.json",
      "  converge demo              watch a late compaction converge",
      "  converge gateway           start the gateway",
      "  converge import            merge sessions.json into the database",
      "  converge export            write the database's entries as sessions.json",
      "",
      "converge <command> --help for each command's options."
    ].join("\n")
  )
).pipe(
  Command.withDescription("Converge: the runner core of an AI-assistant gateway."),
  Command.withSubcommands([
    status,
    sessions,
    compactCommand,
    repairCommand,
    demoCommand,
    gateway,
    importCommand,
    exportCommand
  ])
)

/** The `converge` command line, as `@effect/cli` runs it. */
export const cli = Command.run(root, { name: "converge", version: VERSION })

/**
 * Runs `converge` with `argv` (`process.argv`): a `CliError` becomes one line on stderr,
 * every failure an `ExitCode` for the teardown.
 */
export const main = (argv: ReadonlyArray<string>): Effect.Effect<void, ExitCode> =>
  cli(argv).pipe(
    Effect.catchAllCause((cause) => {
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure)) {
        const e = failure.value
        if (e instanceof ExitCode) return Effect.fail(e)
        if (e instanceof CliError) {
          // One line, whatever the message embeds (schema errors span several).
          const line = e.message.replace(/\s*\n\s*/g, " ")
          return Console.error(`converge: ${line}`).pipe(
            Effect.zipRight(Effect.fail(new ExitCode({ code: e.exitCode })))
          )
        }
        // @effect/cli has printed its own message for bad arguments.
        if (ValidationError.isValidationError(e)) return Effect.fail(new ExitCode({ code: EXIT_ERROR }))
      }
      if (Cause.isInterruptedOnly(cause)) return Effect.interrupt
      return Console.error(`converge: unexpected failure\n${Cause.pretty(cause)}`).pipe(
        Effect.zipRight(Effect.fail(new ExitCode({ code: EXIT_ERROR })))
      )
    }),
    // Logs go to stderr, so `--json` output stays parseable; errors only, unless --log-level says otherwise.
    Effect.provide(Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: true }))),
    Logger.withMinimumLogLevel(LogLevel.Error),
    Effect.provide(NodeContext.layer)
  )

/** Exit codes for `NodeRuntime.runMain`: an `ExitCode` failure's code, 0 on success or interruption, else 1. */
export const teardown: Teardown = (exit, onExit) => {
  if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return onExit(0)
  const failure = Cause.failureOption(exit.cause)
  onExit(Option.isSome(failure) && failure.value instanceof ExitCode ? failure.value.code : EXIT_ERROR)
}
