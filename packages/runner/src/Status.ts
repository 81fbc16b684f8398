/**
 * The read model of `/status`: the store entry, the running compaction and the last run.
 */
import { Effect, Option } from "effect"
import {
  type SessionEntry,
  type SessionNotFound,
  type SessionStatus,
  sessionIdProblem,
  type SessionUnavailable
} from "@converge/domain"
import { SessionStore } from "@converge/store"
import { CompactionSupervisor, type CompactionHandle } from "./CompactionSupervisor.js"
import { Reconciler } from "./Reconciler.js"

const orNull = (n: number | null | undefined): number | null => (typeof n === "number" ? n : null)

/** Builds a `SessionStatus` from an entry and the compaction running for it, if any. */
export const toStatus = (
  sessionKey: string,
  entry: SessionEntry,
  running: CompactionHandle | undefined
): SessionStatus => {
  const last = entry.lastCompaction
  const run = entry.lastRun
  const asOfSeq = entry.tokensAsOfSeq ?? -1
  // Converge measures freshness by sequence; an entry only OpenClaw wrote keeps its own flag.
  const fresh =
    typeof entry.tokensAsOfSeq === "number"
      ? last?.seq === undefined || entry.tokensAsOfSeq >= last.seq
      : (entry.totalTokensFresh ?? false)
  return {
    sessionKey,
    sessionId: entry.sessionId,
    generation: entry.generation ?? 0,
    compactionCount: entry.compactionCount ?? 0,
    compaction:
      running === undefined
        ? { state: "idle" }
        : { state: "running", compactionId: running.compactionId, startedAt: running.startedAt },
    ...(last !== undefined
      ? {
          lastCompaction: {
            compactionId: last.compactionId,
            ordinal: last.ordinal,
            at: last.at,
            ...(last.tokensBefore !== undefined ? { tokensBefore: last.tokensBefore } : {}),
            ...(last.tokensAfter !== undefined ? { tokensAfter: last.tokensAfter } : {})
          }
        }
      : {}),
    tokens: {
      context: orNull(entry.totalTokens),
      window: orNull(entry.contextTokens),
      input: orNull(entry.inputTokens),
      output: orNull(entry.outputTokens),
      fresh: fresh && entry.totalTokens !== undefined && entry.totalTokens !== null,
      asOfSeq
    },
    ...(run !== undefined ? { lastRun: { runId: run.runId, outcome: run.outcome, at: run.at } } : {}),
    updatedAt: entry.updatedAt ?? 0
  }
}

export class Status extends Effect.Service<Status>()("converge/Status", {
  effect: Effect.gen(function* () {
    const store = yield* SessionStore
    const reconciler = yield* Reconciler
    const supervisor = yield* CompactionSupervisor

    /** The status of `key`, recovered from its transcript first if this process has not yet. */
    const get = (key: string): Effect.Effect<SessionStatus, SessionNotFound | SessionUnavailable> =>
      Effect.gen(function* () {
        const session = yield* reconciler.session(key)
        const running = yield* supervisor.inFlight(session.sessionId)
        return toStatus(key, session.entry, Option.getOrUndefined(running))
      })

    /** The status of every session that can be served. */
    const list: Effect.Effect<Array<SessionStatus>> = Effect.gen(function* () {
      const entries = yield* store.list
      const out: Array<SessionStatus> = []
      for (const [key, entry] of entries) {
        if (sessionIdProblem(entry.sessionId) !== undefined) continue
        yield* reconciler.ensureRecovered(key)
        const current = Option.getOrElse(yield* store.get(key), () => entry)
        const running = yield* supervisor.inFlight(current.sessionId)
        out.push(toStatus(key, current, Option.getOrUndefined(running)))
      }
      return out.sort((a, b) => (a.sessionKey < b.sessionKey ? -1 : a.sessionKey > b.sessionKey ? 1 : 0))
    })

    return { get, list } as const
  })
}) {}
