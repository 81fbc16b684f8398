/**
 * `converge compact <key>`: one compaction through the runtime (the gateway's own layers,
 * the model `CONVERGE_MODEL` chooses, local by default), waited for to its end.
 */
import type { FileSystem, Path } from "@effect/platform"
import { Effect } from "effect"
import { type CompactResult, type Config, configFromEnv, type SessionStatus } from "@converge/domain"
import { Reconciler, Runner } from "@converge/runner"
import { CliError } from "./CliError.js"
import { offlineStatus } from "./Offline.js"
import { table } from "./Render.js"
import { entryInFile, openSessionsDir } from "./SessionsDir.js"

/** The runtime package, imported when a command needs it. */
export const loadRuntime = Effect.promise(() => import("@converge/runtime"))

/** Options of `compact`. */
export interface CompactOptions {
  readonly sessionsDir: string
  readonly instructions?: string | undefined
  /** How long to wait for the result; the compaction's own hard timeout by default. */
  readonly waitMs?: number | undefined
  readonly env: Record<string, string | undefined>
}

/** The status before, the compaction's result (with the status after) and the configuration used. */
export interface Compacted {
  readonly before: SessionStatus
  readonly result: CompactResult
  readonly config: Config
}

/** Compacts the session of `key` and waits for it; unknown keys and bad directories fail before anything is written. */
export const compact = (
  key: string,
  options: CompactOptions
): Effect.Effect<Compacted, CliError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const config = yield* configFromEnv({ ...options.env, CONVERGE_SESSIONS_DIR: options.sessionsDir }).pipe(
      Effect.mapError((e) => CliError.of(e.message))
    )
    const d = yield* openSessionsDir(options.sessionsDir)
    // Checked offline first: an unknown key, an unservable entry or an unreadable sessions.json write nothing.
    const before = yield* offlineStatus(d, key)
    const run = Effect.gen(function* () {
      const runner = yield* Runner
      // A session adopted from its transcript exists once recovery has run; do not race the start-up one.
      if (entryInFile(d, key) === undefined) yield* Effect.flatMap(Reconciler, (r) => r.recover())
      return yield* runner.compact(key, {
        instructions: options.instructions,
        waitMs: options.waitMs ?? config.compactionTimeoutMs
      })
    })
    // Loaded on demand: the model providers take a while to import, and only compact and demo need them.
    const runtime = yield* loadRuntime
    const result = yield* run.pipe(
      Effect.provide(runtime.layer({ ...config, sessionsDir: d.dir }, options.env)),
      Effect.mapError((e) => CliError.of(e.message))
    )
    return { before, result, config }
  })

const num = (n: number | null | undefined): string => (typeof n === "number" ? String(n) : "—")

/** What `compact` prints for people: the outcome and a before/after table. */
export const renderCompacted = ({ before, result, config }: Compacted): string => {
  const after = result.status
  const head = (() => {
    switch (result.state) {
      case "completed":
        return `compacted ${after.sessionKey}${result.joined ? " (joined a compaction already running)" : ""}: ${result.compactionId ?? ""}`
      case "skipped":
        return `nothing to compact in ${after.sessionKey}: what follows its last compaction is within keepRecentTokens (${config.keepRecentTokens}; CONVERGE_KEEP_RECENT_TOKENS)`
      case "pending":
        return `the compaction of ${after.sessionKey} (${result.compactionId ?? ""}) had not finished when the wait ended`
      case "failed":
        return `the compaction of ${after.sessionKey} failed: ${result.error?.message ?? "unknown error"}`
    }
  })()
  const rows = table(
    [{ header: "" }, { header: "BEFORE", align: "right" }, { header: "AFTER", align: "right" }],
    [
      [
        "tokens",
        num(result.tokensBefore ?? before.tokens.context),
        num(result.tokensAfter ?? after.tokens.context)
      ],
      ["compactionCount", String(before.compactionCount), String(after.compactionCount)],
      ["fresh", before.tokens.fresh ? "yes" : "no", after.tokens.fresh ? "yes" : "no"]
    ]
  )
  return `${head}\n${rows}`
}
