/**
 * One compaction: choose the cut point, ask the model for a summary, then commit —
 * `Transcript.appendCompaction` → `Reconciler.apply` → publish `CompactionCompleted` —
 * as one uninterruptible step. Before the commit nothing is written.
 */
import { LanguageModel } from "@effect/ai"
import { Clock, Effect } from "effect"
import {
  type CompactionId,
  CompactionCompleted,
  type CompactionReason,
  CompactionStarted,
  type ContextOverflow,
  type ModelError,
  type SessionId,
  type StorageError,
  type SessionLeased
} from "@converge/domain"
import { estimateTokens, Transcript } from "@converge/transcript"
import { chooseCut } from "./cutPoint.js"
import { LifecycleEvents } from "./LifecycleEvents.js"
import * as Model from "./Model.js"
import { Reconciler, type SessionRef } from "./Reconciler.js"
import { RunnerConfig, trusted } from "./RunnerConfig.js"

/** What a compaction that ran to its end produced. */
export type CompactionOutcome =
  | {
      readonly _tag: "Completed"
      readonly compactionId: string
      readonly ordinal: number
      readonly seq: number
      readonly tokensBefore: number
      readonly tokensAfter: number
      readonly created: boolean
    }
  | { readonly _tag: "Skipped"; readonly compactionId: string; readonly tokensBefore: number }

/** Why a compaction did not commit. */
export type CompactionError = ContextOverflow | ModelError | StorageError | SessionLeased

export class Compactor extends Effect.Service<Compactor>()("converge/Compactor", {
  effect: Effect.gen(function* () {
    const transcript = yield* Transcript
    const reconciler = yield* Reconciler
    const events = yield* LifecycleEvents
    const config = yield* RunnerConfig
    const model = yield* LanguageModel.LanguageModel

    /**
     * Runs one compaction of `session`. `onCommit` runs inside the uninterruptible commit,
     * after the event is published, so the supervisor learns of the result atomically.
     */
    const run = (
      session: SessionRef,
      compactionId: CompactionId,
      reason: CompactionReason,
      instructions: string | undefined,
      onCommit: (outcome: CompactionOutcome) => Effect.Effect<void>
    ): Effect.Effect<CompactionOutcome, CompactionError> =>
      Effect.gen(function* () {
        const sessionId = session.sessionId as SessionId
        const context = yield* transcript.buildContext(sessionId)
        const tokensBefore = context.tokens
        const base = { sessionKey: session.sessionKey, sessionId, generation: session.generation }
        const cut = chooseCut(context.entries, config.keepRecentTokens)
        if (cut === undefined) {
          // Nothing to summarize: no compaction starts, so no event is published.
          const skipped: CompactionOutcome = { _tag: "Skipped", compactionId, tokensBefore }
          yield* Effect.uninterruptible(onCommit(skipped))
          return skipped
        }
        yield* events.publish(
          new CompactionStarted(
            {
              ...base,
              at: yield* Clock.currentTimeMillis,
              compactionId,
              reason,
              tokensBefore
            },
            trusted
          )
        )
        const firstKeptEntryId = context.entries[cut]!.entry.id as string
        const summary = yield* Model.summarize(
          context.summary,
          context.entries.slice(0, cut),
          instructions
        ).pipe(Effect.provideService(LanguageModel.LanguageModel, model))
        const commit = Effect.gen(function* () {
          const appended = yield* transcript.appendCompaction(sessionId, {
            compactionId,
            firstKeptEntryId,
            build: (entriesSinceCut) => ({
              summary: summary.text,
              tokensBefore,
              tokensAfter: estimateTokens(summary.text, entriesSinceCut)
            })
          })
          const entry = appended.entry as { timestamp: string; tokensAfter?: number; tokensBefore?: number }
          const at = Date.parse(entry.timestamp)
          const tokensAfter = entry.tokensAfter ?? 0
          const ordinal = yield* reconciler.ordinalOf(session.sessionKey, sessionId, appended.index)
          const completed = new CompactionCompleted(
            {
              ...base,
              at,
              compactionId,
              ordinal,
              seq: appended.seq,
              tokensBefore: entry.tokensBefore ?? tokensBefore,
              tokensAfter
            },
            trusted
          )
          yield* reconciler.apply(completed)
          if (appended.created) yield* events.publish(completed)
          const outcome: CompactionOutcome = {
            _tag: "Completed",
            compactionId,
            ordinal,
            seq: appended.seq,
            tokensBefore: completed.tokensBefore,
            tokensAfter,
            created: appended.created
          }
          yield* onCommit(outcome)
          return outcome
        })
        return yield* Effect.uninterruptible(commit)
      })

    return { run } as const
  })
}) {}
