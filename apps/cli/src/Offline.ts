/**
 * `converge status` and `converge sessions` without a gateway: the transcripts folded into
 * an offline view by the runner's `Reconciler`, read by the runner's `toStatus`, so the
 * values are the HTTP API's (while no compaction runs). Nothing is written.
 */
import type { FileSystem, Path } from "@effect/platform"
import { Effect } from "effect"
import { type SessionStatus, sessionIdProblem } from "@converge/domain"
import { Reconciler, toStatus } from "@converge/runner"
import { SessionStore } from "@converge/store"
import { CliError } from "./CliError.js"
import type { OnProgress } from "./Progress.js"
import {
  checkKey,
  entryInFile,
  requireReadable,
  type SessionsDirectory,
  withOfflineView
} from "./SessionsDir.js"

/** A session on disk that cannot be served, and why. */
export interface Unservable {
  readonly sessionKey: string
  readonly sessionId: string
  readonly problem: string
}

/** Every session of the directory, as `GET /v1/sessions` lists them, plus those it cannot serve. */
export interface SessionsView {
  readonly sessions: ReadonlyArray<SessionStatus>
  readonly unservable: ReadonlyArray<Unservable>
}

/** The status of `key`, as `GET /v1/sessions/{key}/status` would answer it. */
export const offlineStatus = (
  d: SessionsDirectory,
  key: string
): Effect.Effect<SessionStatus, CliError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    yield* checkKey(key)
    yield* requireReadable(d)
    const bad = d.content._tag === "Ok" ? d.content.bad.find((b) => b.key === key) : undefined
    if (bad !== undefined) {
      return yield* CliError.of(
        `the entry ${JSON.stringify(key)} in ${d.file} is not a session entry: ${bad.reason}`
      )
    }
    return yield* withOfflineView(d, () =>
      Effect.gen(function* () {
        const reconciler = yield* Reconciler
        // A key that is not in sessions.json may be a transcript the gateway adopts at start-up.
        if (entryInFile(d, key) === undefined) yield* reconciler.recover()
        const session = yield* reconciler.session(key).pipe(
          Effect.catchTags({
            SessionNotFound: () =>
              Effect.fail(
                CliError.of(`no session is stored under the key ${JSON.stringify(key)} in ${d.dir}`)
              ),
            SessionUnavailable: (e) => Effect.fail(CliError.of(e.message))
          })
        )
        return toStatus(key, session.entry, undefined)
      })
    )
  })

/** Every session of the directory, after the start-up recovery a gateway would run. */
export const offlineSessions = (
  d: SessionsDirectory,
  onProgress?: OnProgress
): Effect.Effect<SessionsView, CliError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    yield* requireReadable(d)
    return yield* withOfflineView(d, () =>
      Effect.gen(function* () {
        const reconciler = yield* Reconciler
        const store = yield* SessionStore
        yield* reconciler.recover(undefined, onProgress === undefined ? {} : { onProgress })
        const sessions: Array<SessionStatus> = []
        const unservable: Array<Unservable> = (d.content._tag === "Ok" ? d.content.bad : []).map((b) => ({
          sessionKey: b.key,
          sessionId: "",
          problem: `not a session entry: ${b.reason}`
        }))
        for (const [key, entry] of yield* store.list) {
          const problem = sessionIdProblem(entry.sessionId)
          if (problem === undefined) sessions.push(toStatus(key, entry, undefined))
          else unservable.push({ sessionKey: key, sessionId: entry.sessionId, problem })
        }
        unservable.sort((a, b) => (a.sessionKey < b.sessionKey ? -1 : a.sessionKey > b.sessionKey ? 1 : 0))
        return { sessions, unservable }
      })
    )
  })
