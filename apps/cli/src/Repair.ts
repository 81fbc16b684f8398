/**
 * `converge repair`: folds every transcript into `sessions.json` with the store's merges.
 * It takes the store's lock and merges on flush (so it is safe beside a running gateway),
 * raises only what the transcripts prove, keeps every field it does not own and every
 * entry it cannot serve, and backs `sessions.json` up before it writes. `--dry-run` runs
 * the same code on an offline copy of `sessions.json` and writes nothing.
 */
import { FileSystem, Path } from "@effect/platform"
import { Clock, Effect, Logger, LogLevel, Option } from "effect"
import { type SessionEntry, sessionIdProblem } from "@converge/domain"
import { Reconciler, type RecoveryReport } from "@converge/runner"
import { jsonEqual, SessionStore } from "@converge/store"
import type { OnProgress } from "./Progress.js"
import { CliError } from "./CliError.js"
import { recoveryLayer, SESSIONS_FILE, type SessionsDirectory, withOfflineView } from "./SessionsDir.js"

/** One session of the repair table. */
export interface RepairRow {
  readonly sessionKey: string
  readonly sessionId: string
  /** `compactionCount` as `sessions.json` had it (none for an entry repair creates). */
  readonly before: number | null
  /** `compactionCount` after the repair (none for a value kept as it is). */
  readonly after: number | null
  /** What changed, in words (`compactionCount 0→4`, `tokens 181000→12300`, `adopted`, …); empty when nothing did. */
  readonly changes: ReadonlyArray<string>
  /** What repair found and could not fix: torn lines, missing transcripts, ids that cannot be served, values that are not entries. */
  readonly problems: ReadonlyArray<string>
}

/** What a repair did (or, with `--dry-run`, would do). */
export interface RepairReport {
  readonly sessionsDir: string
  readonly dryRun: boolean
  readonly sessions: ReadonlyArray<RepairRow>
  /** Whether `sessions.json` was (or would be) written. */
  readonly wrote: boolean
  /** Whether there was no `sessions.json` before (it was, or would be, created from the transcripts). */
  readonly created: boolean
  /** The backup of `sessions.json` written before it was changed. */
  readonly backup?: string
  /** Set when `sessions.json` could not be read: it was (would be) moved aside and rebuilt from the transcripts. */
  readonly unreadable?: { readonly problem: string; readonly movedTo?: string }
  /** How many sessions have problems repair could not fix. */
  readonly unfixed: number
}

const fmt = (n: number | null | undefined): string => (typeof n === "number" ? String(n) : "—")

/** What changed between the entry `sessions.json` had and the one repair leaves, in words. */
export const describeChanges = (before: SessionEntry | undefined, after: SessionEntry): Array<string> => {
  if (before === undefined) return ["new entry (from its transcript)"]
  const out: Array<string> = []
  if ((before.generation ?? 0) < (after.generation ?? 0) && before.sessionId === after.sessionId) {
    out.push(`reset by another tool: generation ${after.generation ?? 0}`)
  }
  if ((before.compactionCount ?? 0) !== (after.compactionCount ?? 0)) {
    out.push(`compactionCount ${fmt(before.compactionCount ?? 0)}→${fmt(after.compactionCount ?? 0)}`)
  }
  if (before.totalTokens !== after.totalTokens)
    out.push(`tokens ${fmt(before.totalTokens)}→${fmt(after.totalTokens)}`)
  if (before.totalTokensFresh !== after.totalTokensFresh && after.totalTokensFresh !== undefined) {
    out.push(after.totalTokensFresh ? "fresh" : "not fresh")
  }
  if (before.inputTokens !== after.inputTokens)
    out.push(`input ${fmt(before.inputTokens)}→${fmt(after.inputTokens)}`)
  if (before.outputTokens !== after.outputTokens)
    out.push(`output ${fmt(before.outputTokens)}→${fmt(after.outputTokens)}`)
  if (!jsonEqual(before.lastCompaction, after.lastCompaction) && after.lastCompaction !== undefined) {
    out.push(`lastCompaction #${after.lastCompaction.ordinal}`)
  }
  if (before.ownedFor !== after.ownedFor) out.push("adopted")
  else if (out.length === 0 && !jsonEqual(before, after)) out.push("bookkeeping")
  return out
}

const rowsOf = (
  d: SessionsDirectory,
  reports: ReadonlyArray<RecoveryReport>,
  after: ReadonlyArray<readonly [string, SessionEntry]>
): Array<RepairRow> => {
  const before = new Map(d.content._tag === "Ok" ? d.content.entries : [])
  const problems = new Map(reports.map((r) => [r.sessionKey, r.problems]))
  const served = new Set(after.map(([key]) => key))
  // Values that are not session entries: the store keeps them as they are; repair cannot fix them.
  const kept = (d.content._tag === "Ok" ? d.content.bad : [])
    .filter((b) => !served.has(b.key))
    .map(
      (b): RepairRow => ({
        sessionKey: b.key,
        sessionId: "",
        before: null,
        after: null,
        changes: ["kept as it is"],
        problems: [`not a session entry: ${b.reason}`]
      })
    )
  const rows = after.map(([key, entry]): RepairRow => {
    const old = before.get(key)
    return {
      sessionKey: key,
      sessionId: entry.sessionId,
      before: old === undefined ? null : (old.compactionCount ?? 0),
      after: entry.compactionCount ?? 0,
      changes: describeChanges(old, entry),
      problems:
        problems.get(key) ??
        (sessionIdProblem(entry.sessionId) === undefined ? [] : [sessionIdProblem(entry.sessionId)!])
    }
  })
  return [...rows, ...kept].sort((a, b) =>
    a.sessionKey < b.sessionKey ? -1 : a.sessionKey > b.sessionKey ? 1 : 0
  )
}

/** Recovery over the store in context: the rows, whether the flush wrote, and the unreadable file moved aside. */
const recoverAndFlush = (d: SessionsDirectory, onProgress: OnProgress | undefined) =>
  Effect.gen(function* () {
    const store = yield* SessionStore
    const reconciler = yield* Reconciler
    const corrupt = yield* store.corrupt
    const reports = yield* reconciler.recover(undefined, onProgress === undefined ? {} : { onProgress })
    const after = yield* store.list
    yield* store.flush
    const stats = yield* store.stats
    return {
      sessions: rowsOf(d, reports, after),
      wrote: stats.writes > 0,
      movedTo: Option.flatMap(corrupt, (c) => Option.fromNullable(c.movedTo))
    }
  })

const summary = (
  d: SessionsDirectory,
  dryRun: boolean,
  result: { sessions: Array<RepairRow>; wrote: boolean },
  extra: { backup?: string; unreadable?: { problem: string; movedTo?: string } }
): RepairReport => ({
  sessionsDir: d.dir,
  dryRun,
  sessions: result.sessions,
  wrote: result.wrote,
  created: d.content._tag === "Missing" && result.wrote,
  ...extra,
  unfixed: result.sessions.filter((r) => r.problems.length > 0).length
})

/** Repairs `d` in place: backup, then the store's lock, recovery and one merged, atomic write. */
export const repair = (
  d: SessionsDirectory,
  onProgress?: OnProgress
): Effect.Effect<RepairReport, CliError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    // An unreadable file is moved aside by the store itself (never overwritten); a readable one is copied first.
    let backup: string | undefined
    if (d.content._tag === "Ok") {
      const now = yield* Clock.currentTimeMillis
      backup = path.join(d.dir, `${SESSIONS_FILE}.bak-${now}`)
      for (let n = 1; yield* fs.exists(backup).pipe(Effect.orElseSucceed(() => false)); n++) {
        backup = path.join(d.dir, `${SESSIONS_FILE}.bak-${now}-${n}`)
      }
      const target = backup
      yield* fs
        .copyFile(d.file, target)
        .pipe(
          Effect.mapError((e) =>
            CliError.of(`cannot back up ${d.file} to ${target}: ${e.message}; nothing was written`)
          )
        )
    }
    const result = yield* recoverAndFlush(d, onProgress).pipe(
      Effect.provide(recoveryLayer(d.dir, d.dir)),
      Effect.catchTag("StorageError", (e) => Effect.fail(CliError.of(e.message))),
      // The store logs what the report prints anyway (a file moved aside, torn lines).
      Logger.withMinimumLogLevel(LogLevel.None)
    )
    // Nothing written: the backup would be a copy of an unchanged file.
    if (!result.wrote && backup !== undefined) {
      yield* fs.remove(backup).pipe(Effect.ignore)
      backup = undefined
    }
    return summary(d, false, result, {
      ...(backup !== undefined ? { backup } : {}),
      ...(d.content._tag === "Unreadable"
        ? {
            unreadable: {
              problem: d.content.problem,
              ...Option.match(result.movedTo, { onNone: () => ({}), onSome: (movedTo) => ({ movedTo }) })
            }
          }
        : {})
    })
  })

/** What `repair` would do to `d`, computed the same way on an offline copy; writes nothing. */
export const repairDryRun = (
  d: SessionsDirectory,
  onProgress?: OnProgress
): Effect.Effect<RepairReport, CliError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const result = yield* withOfflineView(d, () => recoverAndFlush(d, onProgress))
    return summary(
      d,
      true,
      result,
      d.content._tag === "Unreadable" ? { unreadable: { problem: d.content.problem } } : {}
    )
  })
