/**
 * Turns, manual compactions, cancellation and resets. A turn runs in its session's lane,
 * bounded by its timeout from submission; a compaction it starts belongs to the
 * `CompactionSupervisor`, so the turn can stop waiting while the compaction goes on.
 * Turns run in a fiber set owned by this service: a caller that goes away does not
 * cancel them, and shutdown drains them.
 */
import { LanguageModel } from "@effect/ai"
import {
  Cause,
  Clock,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  FiberId,
  FiberSet,
  Metric,
  Option,
  Schedule,
  type Tracer
} from "effect"
import {
  type CompactResult,
  type ContextOverflow,
  type ErrorInfo,
  InvalidSessionKey,
  type LaneFull,
  Overloaded,
  makeRunId,
  makeSessionId,
  isSessionKey,
  Lru,
  Metrics,
  type ModelError,
  type SessionId,
  type SessionLeased,
  SessionNotFound,
  SessionReset,
  type SessionStatus,
  type SessionUnavailable,
  ShuttingDown,
  type StorageError,
  type StorageUnavailable,
  type TimeoutKind,
  TurnFinished,
  type TurnOutcome,
  type TurnResult,
  TurnStarted,
  UsageObserved,
  Tracing,
  contentText,
  type MessageEntry
} from "@converge/domain"
import { type SeqEntry, Transcript } from "@converge/transcript"
import { AdmissionControl } from "./Admission.js"
import { type CompactionHandle, CompactionSupervisor } from "./CompactionSupervisor.js"
import { type Deadline, makeDeadlines } from "./Deadlines.js"
import { IdempotencyRecord } from "./IdempotencyRecord.js"
import { Lanes } from "./Lanes.js"
import { LifecycleEvents } from "./LifecycleEvents.js"
import * as Model from "./Model.js"
import { Reconciler, type SessionRef } from "./Reconciler.js"
import { RunnerConfig, trusted } from "./RunnerConfig.js"
import { Status } from "./Status.js"

/** Options of a turn. */
export interface TurnOptions {
  /** Overrides `turnTimeoutMs`, counted from submission. */
  readonly timeoutMs?: number | undefined
  /** A repeat with the same key (per session, kept 24 h) returns the first result and runs nothing. */
  readonly idempotencyKey?: string | undefined
}

/** How long an idempotency key is remembered. */
export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000

/**
 * How long past its timeout a turn may hold its idempotency key in a shared record: its result
 * is settled and recorded within this, so a key still unanswered after it has a dead holder.
 */
export const IDEMPOTENCY_HOLD_GRACE_MS = 10_000

/** Options of a manual compaction. */
export interface CompactOptions {
  readonly instructions?: string | undefined
  /** How long to wait for the result (default `compactionWaitMs`); the compaction goes on after. */
  readonly waitMs?: number | undefined
}

/** Errors a turn answers with instead of a `TurnResult`. */
export type TurnError =
  | LaneFull
  | SessionLeased
  | SessionUnavailable
  | InvalidSessionKey
  | ShuttingDown
  | Overloaded
  | StorageUnavailable

type CompactionState = TurnResult["compaction"]["state"]

/** What a turn knows while it runs; read by the timeout path. */
interface Progress {
  session: SessionRef | undefined
  lastSeq: number
  compaction: CompactionHandle | undefined
  compactionState: CompactionState
  committed: TurnDraft | undefined
  /** Set when the turn's deadline came before its body ended. */
  timedOut: boolean
  /** Ms spent waiting on the model and on compactions (for admission control). */
  waitedMs: number
}

/** How a turn ended, before its status is attached. */
interface TurnDraft {
  readonly outcome: TurnOutcome
  readonly timeout?: TimeoutKind
  readonly reply?: string
  readonly error?: ErrorInfo
}

/** The message of a message entry. */
const messageOf = (e: SeqEntry) =>
  e.entry.type === "message" ? (e.entry as MessageEntry).message : undefined

const errorInfo = (e: { readonly _tag: string; readonly message: string }): ErrorInfo => ({
  _tag: e._tag,
  message: e.message
})

export class Runner extends Effect.Service<Runner>()("converge/Runner", {
  scoped: Effect.gen(function* () {
    const config = yield* RunnerConfig
    const lanes = yield* Lanes
    const transcript = yield* Transcript
    const reconciler = yield* Reconciler
    const supervisor = yield* CompactionSupervisor
    const events = yield* LifecycleEvents
    const status = yield* Status
    const model = yield* LanguageModel.LanguageModel
    const turns = yield* FiberSet.make<unknown, unknown>()
    const deadlines = yield* makeDeadlines
    // Idempotency keys: claimed before the turn starts, so a repeat waits for the first result.
    // Kept 24 h and at most `idempotencyKeys` of them, in claim order: past the bound the
    // oldest is dropped early, and a repeat of it runs as a new turn (docs/memory.md).
    const claimed = new Lru<
      string,
      { readonly result: Deferred.Deferred<TurnResult, TurnError>; readonly at: number }
    >({ maxEntries: config.idempotencyKeys })
    // Asked before a key is run: another gateway, or this one before a restart, may have run it.
    const record = Option.getOrElse(
      yield* Effect.serviceOption(IdempotencyRecord),
      () => IdempotencyRecord.inProcess
    )
    const admission = new AdmissionControl(
      { maxTurns: config.maxTurns, budgetMs: config.admissionMs },
      yield* Clock.currentTimeMillis
    )
    let shuttingDown = false
    const threshold = config.contextWindow - config.reserveTokens

    const checkKey = (key: string) =>
      isSessionKey(key)
        ? Effect.void
        : Effect.fail(
            new InvalidSessionKey({
              sessionKey: key,
              message: `invalid session key ${JSON.stringify(key.slice(0, 64))}: 1–256 characters of A-Z a-z 0-9 : _ . @ + -`
            })
          )

    const refuseWhenShuttingDown = Effect.suspend(() =>
      shuttingDown ? Effect.fail(new ShuttingDown({ message: "the runtime is shutting down" })) : Effect.void
    )

    /** The session of `key`, created (generation 1) when there is none. */
    const ensureSession = (key: string) =>
      Effect.flatMap(reconciler.findSession(key), (found) =>
        Option.isSome(found)
          ? Effect.succeed(found.value)
          : reconciler.create(key, makeSessionId()).pipe(
              Effect.zipRight(reconciler.session(key)),
              Effect.catchTag("SessionNotFound", (e) => Effect.die(e))
            )
      )

    /** The event that ends a turn. */
    const turnFinished = (s: SessionRef, runId: string, draft: TurnDraft, seq: number) =>
      Effect.map(
        Clock.currentTimeMillis,
        (at) =>
          new TurnFinished(
            {
              sessionKey: s.sessionKey,
              sessionId: s.sessionId,
              generation: s.generation,
              at,
              runId,
              outcome: draft.outcome,
              seq,
              ...(draft.timeout !== undefined ? { timeout: draft.timeout } : {})
            },
            trusted
          )
      )

    /** Applies and publishes the end of a turn: state first, then the event. */
    const finish = (s: SessionRef, runId: string, draft: TurnDraft, seq: number) =>
      Effect.gen(function* () {
        const event = yield* turnFinished(s, runId, draft, seq)
        yield* reconciler.apply(event)
        yield* events.publish(event)
      })

    /** Waits for a compaction within the compaction wait, or until the turn's deadline. */
    const waitForCompaction = (handle: CompactionHandle, deadline: number, progress: Progress) =>
      Effect.gen(function* () {
        progress.compaction = handle
        progress.compactionState = "pending"
        const now = yield* Clock.currentTimeMillis
        // When both bounds fall due at once the turn timeout wins: wait on, the turn's timer fires.
        const bound = now + config.compactionWaitMs >= deadline ? Duration.infinity : config.compactionWaitMs
        const result = yield* supervisor.await(handle, bound)
        if (Option.isNone(result)) return false
        progress.compactionState = Exit.isSuccess(result.value) ? "completed" : "failed"
        return true
      }).pipe(
        Tracing.withSpan("converge.turn.compaction_wait", {
          attributes: { "compaction.id": handle.compactionId }
        })
      )

    const contextOf = (sessionId: SessionId) =>
      transcript.buildContext(sessionId).pipe(Tracing.withSpan("converge.turn.context"))

    /** Runs `effect`, adding the time it took to what the turn waited on others. */
    const waiting = <A, E>(progress: Progress, effect: Effect.Effect<A, E>) =>
      Effect.flatMap(Clock.currentTimeMillis, (t0) =>
        Effect.ensuring(
          effect,
          Effect.map(Clock.currentTimeMillis, (t1) => {
            progress.waitedMs += t1 - t0
          })
        )
      )

    const callModel = (summary: string | undefined, entries: Parameters<typeof Model.reply>[1]) =>
      Model.reply(summary, entries).pipe(
        Effect.retry({
          schedule: Schedule.exponential(Duration.millis(250)).pipe(Schedule.intersect(Schedule.recurs(3))),
          while: (e: ContextOverflow | ModelError) => e._tag === "ModelError" && e.transient
        }),
        Effect.provideService(LanguageModel.LanguageModel, model)
      )

    /** The turn itself, run in the session's lane. */
    /**
     * What an earlier attempt of this turn wrote, for a turn run again after its first runner
     * died: its user message (the last message of the transcript, with this text), and the
     * reply after it when there is one; `undefined` when the last message is not it.
     */
    const writtenBefore = (sessionId: SessionId, message: string) =>
      transcript.read(sessionId).pipe(
        Effect.map((read) => {
          const messages = read.entries.filter((e) => e.entry.type === "message")
          const last = messages.at(-1)
          const before = messages.at(-2)
          const isThisTurn = (e: SeqEntry | undefined) =>
            e !== undefined && messageOf(e)?.role === "user" && messageOf(e)?.content === message
          if (isThisTurn(last)) return { seq: last!.seq, reply: undefined }
          if (isThisTurn(before) && messageOf(last!)?.role === "assistant")
            return { seq: before!.seq, reply: contentText(messageOf(last!)?.content) }
          return undefined
        }),
        Effect.orElseSucceed(() => undefined)
      )

    const body = (
      key: string,
      runId: string,
      message: string,
      deadline: number,
      progress: Progress,
      resume: boolean
    ) =>
      Effect.gen(function* () {
        const s = yield* ensureSession(key)
        progress.session = s
        const sessionId = s.sessionId as SessionId
        const written = resume ? yield* writtenBefore(sessionId, message) : undefined
        if (written?.reply !== undefined)
          return { outcome: "completed", reply: written.reply } satisfies TurnDraft
        const now = yield* Clock.currentTimeMillis
        // Event fields are written out, not spread: in V8 11 (Node 20) `{ ...base, more }` takes
        // a slow path (microseconds per object) that a literal does not.
        yield* events.publish(
          new TurnStarted({ sessionKey: key, sessionId, generation: s.generation, at: now, runId }, trusted)
        )
        if (written === undefined) {
          const [user] = yield* transcript.append(
            sessionId,
            [{ type: "message", message: { role: "user", content: message, timestamp: now } }],
            { sessionKey: key }
          )
          progress.lastSeq = user!.seq
        } else progress.lastSeq = written.seq

        let context = yield* contextOf(sessionId)
        const running = Option.getOrUndefined(yield* supervisor.inFlight(sessionId))
        const handle = context.tokens > threshold ? (yield* supervisor.start(s, "threshold")).handle : running
        if (handle !== undefined) {
          const settled = yield* waiting(progress, waitForCompaction(handle, deadline, progress))
          context = yield* contextOf(sessionId)
          if (!settled && context.tokens > threshold) {
            return { outcome: "timed_out", timeout: "compactionWait" } satisfies TurnDraft
          }
        }

        let answer = yield* waiting(progress, callModel(context.summary, context.entries)).pipe(Effect.either)
        if (Either.isLeft(answer) && answer.left._tag === "ContextOverflow") {
          // Compact and retry once.
          const started = yield* supervisor.start(s, "overflow")
          const settled = yield* waiting(progress, waitForCompaction(started.handle, deadline, progress))
          if (!settled) return { outcome: "timed_out", timeout: "compactionWait" } satisfies TurnDraft
          context = yield* contextOf(sessionId)
          answer = yield* waiting(progress, callModel(context.summary, context.entries)).pipe(Effect.either)
        }
        if (Either.isLeft(answer)) {
          return { outcome: "failed", error: errorInfo(answer.left) } satisfies TurnDraft
        }
        const { text, input, output } = answer.right
        const promptSeq = context.lastSeq
        const commit = Effect.gen(function* () {
          const at = yield* Clock.currentTimeMillis
          const [reply] = yield* transcript.append(
            sessionId,
            [
              {
                type: "message",
                promptSeq,
                message: {
                  role: "assistant",
                  content: [{ type: "text", text }],
                  usage: { input, output, totalTokens: input + output },
                  stopReason: "stop",
                  timestamp: at
                }
              }
            ],
            { sessionKey: key }
          )
          const usage = new UsageObserved(
            {
              sessionKey: key,
              sessionId,
              generation: s.generation,
              at,
              runId,
              input,
              output,
              context: input + output,
              asOfSeq: promptSeq
            },
            trusted
          )
          const draft: TurnDraft = { outcome: "completed", reply: text }
          const finished = yield* turnFinished(s, runId, draft, reply!.seq)
          // Both changes in one merge, then both events.
          yield* reconciler.applyAll([usage, finished])
          yield* events.publish(usage)
          yield* events.publish(finished)
          progress.lastSeq = reply!.seq
          progress.committed = draft
          return draft
        })
        return yield* Effect.uninterruptible(commit)
      })

    const compactionOf = (progress: Progress): TurnResult["compaction"] =>
      progress.compaction === undefined
        ? { state: "none" }
        : { state: progress.compactionState, compactionId: progress.compaction.compactionId }

    const statusOr = (key: string, fallback: SessionRef | undefined) =>
      status.get(key).pipe(
        Effect.catchAll(() =>
          Effect.succeed<SessionStatus>({
            sessionKey: key,
            sessionId: fallback?.sessionId ?? "",
            generation: fallback?.generation ?? 0,
            compactionCount: 0,
            compaction: { state: "idle" },
            tokens: { context: null, window: null, input: null, output: null, fresh: false, asOfSeq: -1 },
            updatedAt: 0
          })
        )
      )

    /**
     * The stored entry of `key` read again (another gateway on the database may have created,
     * compacted or reset it) for the routes other than turns. A store that cannot be read is
     * not an error here: the entry in memory is answered, and what writes fails on its own.
     */
    const fresh = (key: string) => Effect.ignore(reconciler.refresh(key))

    /** Runs one turn, once per idempotency key when one is given. */
    const turn = (
      key: string,
      message: string,
      options: TurnOptions = {}
    ): Effect.Effect<TurnResult, TurnError> => {
      const idempotencyKey = options.idempotencyKey
      return idempotencyKey === undefined
        ? runTurn(key, message, options)
        : Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            // Keys are kept in the order they were claimed: expired ones are at the front.
            claimed.evictWhile((_, v) => now - v.at >= IDEMPOTENCY_TTL_MS)
            const id = `${key}\u0000${idempotencyKey}`
            // `peek`: a repeat does not renew its key, so claim order stays expiry order.
            const first = claimed.peek(id)
            if (first !== undefined) return yield* Deferred.await(first.result)
            const result = yield* Deferred.make<TurnResult, TurnError>()
            claimed.set(id, { result, at: now })
            // The result is settled by a fiber of the runtime, whatever happens to this caller.
            const holdMs = (options.timeoutMs ?? config.turnTimeoutMs) + IDEMPOTENCY_HOLD_GRACE_MS
            const once = record.claim(key, idempotencyKey, holdMs).pipe(
              Effect.flatMap((claim) =>
                claim._tag === "Answered"
                  ? Effect.succeed(claim.result)
                  : runTurn(key, message, options, claim._tag === "Abandoned").pipe(
                      Effect.onExit((exit) =>
                        Exit.isSuccess(exit)
                          ? // The turn happened: a record that cannot be written is said, not an error.
                            record
                              .answer(key, idempotencyKey, claim.token, exit.value)
                              .pipe(
                                Effect.catchAll((e) =>
                                  Effect.logWarning(
                                    `idempotency key of turn ${exit.value.runId} not recorded: ${e.message}`
                                  )
                                )
                              )
                          : Effect.ignore(record.release(key, idempotencyKey, claim.token))
                      )
                    )
              )
            )
            yield* FiberSet.run(
              turns,
              Effect.exit(once).pipe(
                Effect.flatMap((exit) => {
                  // A turn refused before it ran (lane full, shutting down) does not keep its key.
                  if (Exit.isFailure(exit)) claimed.delete(id)
                  return Deferred.done(result, exit)
                })
              )
            )
            return yield* Deferred.await(result)
          })
    }

    /**
     * Runs one turn: lane, user message, context, compaction wait, model, reply. `resume`: an
     * earlier attempt's runner died before it answered (its message was delivered again): what
     * that attempt wrote is not written twice (see `writtenBefore`).
     */
    const runTurn = (
      key: string,
      message: string,
      options: TurnOptions,
      resume = false
    ): Effect.Effect<TurnResult, TurnError> =>
      Effect.gen(function* () {
        yield* refuseWhenShuttingDown
        yield* checkKey(key)
        const timeoutMs = options.timeoutMs ?? config.turnTimeoutMs
        const runId = makeRunId()
        const submittedAt = yield* Clock.currentTimeMillis
        const deadline = submittedAt + timeoutMs
        const lane = yield* lanes.state(key)
        const decision = admission.admit(submittedAt, timeoutMs, (lane.running ? 1 : 0) + lane.waiting)
        if (!decision.admitted) {
          const why =
            decision.reason === "maxTurns"
              ? `${config.maxTurns} turns in flight`
              : decision.reason === "lane"
                ? `the turns of session ${key} before this one would not end within the admission budget`
                : `the turns in flight would not end within ${config.admissionMs} ms`
          return yield* Effect.fail(
            new Overloaded({
              message: `overloaded (${why}): retry after ${decision.retryAfterMs} ms`,
              retryAfterMs: decision.retryAfterMs
            })
          )
        }
        yield* Metric.set(Metrics.turnsInFlight, admission.turnsInFlight)
        // From here the admission is released exactly once: by the turn's fiber once it is
        // forked, or here if the turn fails before that.
        const handover = { forked: false }
        const released = (waitedMs: number, served: boolean) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => {
            admission.release(now, waitedMs, served, now - submittedAt)
            return Metric.set(Metrics.turnsInFlight, admission.turnsInFlight)
          })
        // The part of a turn after its admission.
        const admitted = Effect.gen(function* () {
          yield* reconciler.refresh(key)
          const initial = yield* ensureSession(key)
          const span = yield* Tracing.currentSpan
          Tracing.attribute(span, "run.id", runId)
          Tracing.attribute(span, "session.id", initial.sessionId)
          Tracing.attribute(span, "turn.timeout_ms", timeoutMs)
          const progress: Progress = {
            session: undefined,
            lastSeq: -1,
            compaction: undefined,
            compactionState: "none",
            committed: undefined,
            timedOut: false,
            waitedMs: 0
          }
          const result = yield* Deferred.make<TurnResult, TurnError>()
          let releasedAlready = false
          const releaseOnce = Effect.suspend(() => {
            if (releasedAlready) return Effect.void
            releasedAlready = true
            return released(progress.waitedMs, !progress.timedOut)
          })
          // The turn's fiber: the lane and the body run interruptibly, so the deadline can stop
          // them; what follows settles the result whatever happened to them.
          const work = Effect.uninterruptibleMask((restore) =>
            Effect.gen(function* () {
              const due = yield* Effect.withFiberRuntime<Deadline>((fiber) =>
                deadlines.add(
                  deadline,
                  Effect.suspend(() => {
                    progress.timedOut = true
                    return Fiber.interruptAsFork(fiber, FiberId.none)
                  })
                )
              )
              const ended = yield* Effect.exit(
                restore(lanes.withLane(key, body(key, runId, message, deadline, progress, resume)))
              )
              deadlines.cancel(due)
              const settled = yield* Effect.exit(settle(key, runId, progress, initial, ended))
              if (Exit.isSuccess(settled)) yield* observe(span, settled.value, submittedAt)
              // Released before the result is handed over: a client that has its answer and
              // sends the next turn finds this one no longer in flight.
              yield* releaseOnce
              yield* Deferred.done(result, settled)
            }).pipe(Effect.ensuring(releaseOnce))
          )
          // Forked and handed over at once, so the admission is released once, by the fiber.
          // (The fork itself is uninterruptible; the fiber runs interruptibly, as before.)
          yield* Effect.uninterruptible(
            Effect.suspend(() => {
              handover.forked = true
              return FiberSet.run(turns, Effect.interruptible(work))
            })
          )
          return yield* Deferred.await(result)
        })
        return yield* admitted.pipe(Effect.onExit(() => (handover.forked ? Effect.void : released(0, false))))
      }).pipe(
        Effect.tapError((e) => Metric.increment(Metrics.turnsRefusedBy(e._tag))),
        Tracing.withSpan("converge.turn", { attributes: { "session.key": key } })
      )

    /** Records how a turn ended on its span and in the turn metrics. */
    const observe = (span: Option.Option<Tracer.Span>, result: TurnResult, submittedAt: number) =>
      Effect.gen(function* () {
        Tracing.attribute(span, "outcome", result.outcome)
        if (result.timeout !== undefined) Tracing.attribute(span, "timeout", result.timeout)
        if (result.compaction.compactionId !== undefined) {
          Tracing.attribute(span, "compaction.id", result.compaction.compactionId)
        }
        Tracing.attribute(span, "compaction.state", result.compaction.state)
        yield* Metric.increment(Metrics.turnsBy(`${result.outcome}/${result.timeout ?? "none"}`))
        yield* Metric.update(Metrics.turnDuration, (yield* Clock.currentTimeMillis) - submittedAt)
      })

    /** How a turn's body ended, as the turn's result: a timeout, a failure, or what it committed. */
    const settle = (
      key: string,
      runId: string,
      progress: Progress,
      initial: SessionRef,
      ended: Exit.Exit<TurnDraft, TurnError | StorageError>
    ): Effect.Effect<TurnResult, TurnError> =>
      Effect.gen(function* () {
        let draft: TurnDraft
        if (Exit.isSuccess(ended)) draft = ended.value
        else if (progress.timedOut && Cause.isInterruptedOnly(ended.cause)) {
          // A reply committed as the deadline came is delivered: the transcript has it.
          draft = progress.committed ?? { outcome: "timed_out", timeout: "turn" }
        } else {
          const failure = Cause.failureOption(ended.cause)
          if (Option.isSome(failure) && failure.value._tag === "StorageError") {
            return yield* failedResult(key, runId, progress, initial, failure.value)
          }
          // Said out loud: the request answering this turn sees only an interruption.
          if (Option.isNone(failure))
            yield* Effect.logWarning(
              `turn ${runId} ended without a result (timed out: ${progress.timedOut}; interrupted by ${[
                ...Cause.interruptors(ended.cause)
              ]
                .map(FiberId.threadName)
                .join(", ")})`,
              ended.cause
            )
          return yield* Effect.failCause(ended.cause as Cause.Cause<TurnError>)
        }
        const s = progress.session ?? initial
        if (draft.outcome !== "completed") {
          const seq = progress.lastSeq >= 0 ? progress.lastSeq : yield* lastSeqOf(s.sessionId)
          yield* finish(s, runId, draft, seq)
        }
        if (progress.compaction !== undefined && progress.compactionState === "pending") {
          const handle = progress.compaction
          if (yield* Deferred.isDone(handle.done)) {
            const exit = yield* Effect.exit(Deferred.await(handle.done))
            progress.compactionState = Exit.isSuccess(exit) ? "completed" : "failed"
          }
        }
        const result: TurnResult = {
          runId,
          sessionKey: key,
          sessionId: s.sessionId,
          outcome: draft.outcome,
          ...(draft.timeout !== undefined ? { timeout: draft.timeout } : {}),
          ...(draft.reply !== undefined ? { reply: draft.reply } : {}),
          ...(draft.error !== undefined ? { error: draft.error } : {}),
          compaction: compactionOf(progress),
          status: yield* statusOr(key, s)
        }
        return result
      })

    const lastSeqOf = (sessionId: string) =>
      transcript.fold(sessionId as SessionId).pipe(
        Effect.map((f) => f.lastSeq),
        Effect.orElseSucceed(() => -1)
      )

    const failedResult = (
      key: string,
      runId: string,
      progress: Progress,
      initial: SessionRef,
      error: { readonly _tag: string; readonly message: string }
    ) =>
      Effect.gen(function* () {
        const s = progress.session ?? initial
        yield* finish(s, runId, { outcome: "failed" }, progress.lastSeq)
        const result: TurnResult = {
          runId,
          sessionKey: key,
          sessionId: s.sessionId,
          outcome: "failed",
          error: errorInfo(error),
          compaction: compactionOf(progress),
          status: yield* statusOr(key, s)
        }
        return result
      })

    /** Starts (or joins) a compaction of `key` and waits for it at most `waitMs`. */
    const compact = (
      key: string,
      options: CompactOptions = {}
    ): Effect.Effect<CompactResult, SessionNotFound | SessionUnavailable | ShuttingDown> =>
      Effect.gen(function* () {
        yield* refuseWhenShuttingDown
        yield* fresh(key)
        const s = yield* reconciler.session(key)
        const { handle, joined } = yield* supervisor.start(s, "manual", options.instructions)
        const waited = yield* supervisor.await(
          handle,
          Duration.millis(options.waitMs ?? config.compactionWaitMs)
        )
        const base = { compactionId: handle.compactionId, joined }
        const st = yield* status.get(key)
        if (Option.isNone(waited)) return { state: "pending", ...base, status: st } satisfies CompactResult
        const exit = waited.value
        if (Exit.isFailure(exit)) {
          const failure = Exit.causeOption(exit).pipe(
            Option.flatMap((c) => Option.fromNullable(c._tag === "Fail" ? c.error : undefined))
          )
          const error = Option.isSome(failure)
            ? { _tag: "CompactionFailed", message: `${failure.value.reason}: ${failure.value.message}` }
            : { _tag: "CompactionFailed", message: "compaction interrupted" }
          return { state: "failed", ...base, error, status: st } satisfies CompactResult
        }
        const outcome = exit.value
        if (outcome._tag === "Skipped") {
          return {
            state: "skipped",
            ...base,
            tokensBefore: outcome.tokensBefore,
            status: st
          } satisfies CompactResult
        }
        return {
          state: "completed",
          ...base,
          tokensBefore: outcome.tokensBefore,
          tokensAfter: outcome.tokensAfter,
          status: st
        } satisfies CompactResult
      }).pipe(Tracing.withSpan("converge.compact", { attributes: { "session.key": key } }))

    /** Cancels the running compaction of `key` (before its commit) and answers its status. */
    const cancelCompaction = (
      key: string
    ): Effect.Effect<SessionStatus, SessionNotFound | SessionUnavailable> =>
      Effect.gen(function* () {
        yield* fresh(key)
        const s = yield* reconciler.session(key)
        yield* supervisor.cancel(s.sessionId)
        return yield* status.get(key)
      })

    /** Starts a new generation of `key`: new sessionId, count 0; unowned fields kept. */
    const reset = (
      key: string
    ): Effect.Effect<SessionStatus, SessionNotFound | SessionUnavailable | ShuttingDown> =>
      Effect.gen(function* () {
        yield* refuseWhenShuttingDown
        yield* fresh(key)
        const s = yield* reconciler.session(key)
        const event = new SessionReset(
          {
            sessionKey: key,
            sessionId: makeSessionId(),
            generation: s.generation + 1,
            at: yield* Clock.currentTimeMillis,
            previousSessionId: s.sessionId
          },
          trusted
        )
        yield* reconciler.apply(event)
        yield* events.publish(event)
        return yield* status.get(key)
      })

    /**
     * The session of `key` leaves this process (its cluster shard moved to another runner):
     * its compaction may finish within `bound`, else it fails (`shutdown`) before its commit;
     * and what this process recovered of the session is forgotten, so that if it comes back
     * it is rebuilt from the transcript and the store, whatever the other runner did.
     */
    const handOff = (key: string, bound: Duration.DurationInput): Effect.Effect<void> =>
      Effect.zipRight(supervisor.release(key, bound), reconciler.forget(key))

    /** Stops taking new work; what runs goes on until drained. */
    const beginShutdown = Effect.sync(() => {
      shuttingDown = true
    })

    // Shutdown: turns and compactions share one drain bound, then are interrupted (before their commit).
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        shuttingDown = true
        const bound = Duration.millis(config.drainTimeoutMs)
        yield* Effect.all(
          [
            FiberSet.awaitEmpty(turns).pipe(Effect.interruptible, Effect.timeoutOption(bound)),
            supervisor.drain(bound)
          ],
          { concurrency: 2, discard: true }
        )
        yield* FiberSet.clear(turns)
      })
    )

    /** How many turns are running or queued. */
    const running = FiberSet.size(turns)

    /** How many idempotency keys are remembered. */
    const idempotencyKeys = Effect.sync(() => claimed.size)

    /** The admission controller's state: turns in flight, measured capacity, the bound now. */
    const admissionStats = Effect.map(Clock.currentTimeMillis, (now) => admission.stats(now))

    return {
      turn,
      compact,
      cancelCompaction,
      reset,
      handOff,
      beginShutdown,
      running,
      idempotencyKeys,
      admission: admissionStats,
      status: (key: string) => Effect.zipRight(fresh(key), status.get(key)),
      sessions: status.list
    } as const
  })
}) {}

export { SessionNotFound }
