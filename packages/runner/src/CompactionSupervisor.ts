/**
 * Owns every running compaction: a `FiberMap` keyed by `sessionId` in this service's own
 * scope, so a compaction outlives the turn that started it. At most one runs per session;
 * a second request joins it. Each has a hard timeout and can be cancelled; shutdown waits
 * `drainTimeoutMs`, then interrupts what is left (always before its commit).
 */
import {
  Cause,
  Clock,
  Data,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberMap,
  Metric,
  Option,
  type Tracer
} from "effect"
import {
  CompactionFailed,
  Metrics,
  type CompactionFailureReason,
  type CompactionId,
  type CompactionReason,
  makeCompactionId
} from "@converge/domain"
import { type CompactionOutcome, Compactor } from "./Compactor.js"
import { LifecycleEvents } from "./LifecycleEvents.js"
import type { SessionRef } from "./Reconciler.js"
import { RunnerConfig, trusted } from "./RunnerConfig.js"

/** A compaction that did not commit, and why. */
export class CompactionFailure extends Data.TaggedError("CompactionFailure")<{
  readonly compactionId: string
  readonly reason: CompactionFailureReason
  readonly message: string
}> {}

/** A running (or finished) compaction. */
export interface CompactionHandle {
  readonly compactionId: CompactionId
  readonly session: SessionRef
  readonly reason: CompactionReason
  readonly startedAt: number
  readonly done: Deferred.Deferred<CompactionOutcome, CompactionFailure>
  /** Its `converge.compaction` span: a root of its own, linked to every request that started or joined it. */
  readonly span: Tracer.Span
  /** Who waits on it now, and whether anyone ever did: a commit with waited && count 0 is a late completion. */
  readonly waiters: { count: number; waited: boolean }
}

/** The answer of `start`: the compaction, and whether the request joined a running one. */
export interface Started {
  readonly handle: CompactionHandle
  readonly joined: boolean
}

class CompactionTimeout extends Data.TaggedError("CompactionTimeout") {}

export class CompactionSupervisor extends Effect.Service<CompactionSupervisor>()(
  "converge/CompactionSupervisor",
  {
    scoped: Effect.gen(function* () {
      const config = yield* RunnerConfig
      const compactor = yield* Compactor
      const events = yield* LifecycleEvents
      const fibers = yield* FiberMap.make<string, CompactionOutcome, unknown>()
      const handles = new Map<string, CompactionHandle>()
      // Why a compaction is being interrupted, when something other than its timeout does it,
      // and what its failure says then when not the reason's usual message.
      const interrupts = new Map<string, { reason: CompactionFailureReason; message?: string }>()

      const settle = (handle: CompactionHandle, exit: Exit.Exit<CompactionOutcome, unknown>) =>
        Effect.gen(function* () {
          const id = handle.session.sessionId
          if (handles.get(id) === handle) handles.delete(id)
          const interrupt = interrupts.get(handle.compactionId)
          interrupts.delete(handle.compactionId)
          if (yield* Deferred.isDone(handle.done)) {
            const committed = yield* Effect.exit(Deferred.await(handle.done))
            return Exit.isSuccess(committed)
              ? committed.value._tag === "Skipped"
                ? "skipped"
                : "completed"
              : "error"
          }
          let reason: CompactionFailureReason = "error"
          let message = "compaction failed"
          if (Exit.isFailure(exit)) {
            const failure = Cause.failureOption(exit.cause)
            if (Option.isSome(failure) && failure.value instanceof CompactionTimeout) {
              reason = "timeout"
              message = `compaction did not finish within ${config.compactionTimeoutMs} ms`
            } else if (Option.isSome(failure)) {
              const f = failure.value as { message?: unknown }
              message = typeof f.message === "string" ? f.message : String(failure.value)
            } else if (Cause.isInterruptedOnly(exit.cause)) {
              reason = interrupt?.reason ?? "shutdown"
              message =
                interrupt?.message ??
                (reason === "cancelled" ? "compaction cancelled" : "compaction interrupted by shutdown")
            } else {
              message = Cause.pretty(exit.cause)
            }
          }
          const s = handle.session
          yield* events.publish(
            new CompactionFailed(
              {
                sessionKey: s.sessionKey,
                sessionId: s.sessionId,
                generation: s.generation,
                at: yield* Clock.currentTimeMillis,
                compactionId: handle.compactionId,
                reason,
                message
              },
              trusted
            )
          )
          yield* Deferred.fail(
            handle.done,
            new CompactionFailure({ compactionId: handle.compactionId, reason, message })
          )
          return reason
        })

      /** Ends the compaction's span and counts it: `outcome` is completed, skipped or the failure reason. */
      const observe = (handle: CompactionHandle, outcome: string) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeNanos
          handle.span.attribute("outcome", outcome)
          handle.span.end(
            now,
            outcome === "completed" || outcome === "skipped" ? Exit.void : Exit.fail(outcome)
          )
          yield* Metric.increment(Metrics.compactionsBy(`${handle.reason}/${outcome}`))
          yield* Metric.update(Metrics.compactionDuration, Number(now / 1_000_000n) - handle.startedAt)
        })

      /** Commits the outcome; counted as a late completion when everyone who waited has stopped. */
      const commit = (handle: CompactionHandle, outcome: CompactionOutcome) =>
        Effect.suspend(() => {
          const late = outcome._tag === "Completed" && handle.waiters.waited && handle.waiters.count === 0
          handle.span.attribute("compaction.late", late)
          return Deferred.succeed(handle.done, outcome).pipe(
            Effect.zipRight(late ? Metric.increment(Metrics.lateCompletions) : Effect.void)
          )
        })

      const linkTo = (span: Option.Option<Tracer.Span>, kind: "started" | "joined") =>
        Option.isSome(span)
          ? [{ _tag: "SpanLink" as const, span: span.value, attributes: { "link.kind": kind } }]
          : []

      /** The running compaction of `sessionId`, if any. */
      const inFlight = (sessionId: string): Effect.Effect<Option.Option<CompactionHandle>> =>
        Effect.sync(() => Option.fromNullable(handles.get(sessionId)))

      /** Joins the running compaction of the session or starts one (never two at once). */
      const start = (
        session: SessionRef,
        reason: CompactionReason,
        instructions?: string
      ): Effect.Effect<Started> =>
        Effect.uninterruptible(
          Effect.gen(function* () {
            const requester = yield* Effect.option(Effect.currentSpan)
            const running = handles.get(session.sessionId)
            if (running !== undefined) {
              running.span.addLinks(linkTo(requester, "joined"))
              yield* Metric.increment(Metrics.compactionJoinsBy(running.reason))
              return { handle: running, joined: true }
            }
            const compactionId = makeCompactionId()
            // Not the requester's child: the compaction outlives the turn that started it.
            const span = yield* Effect.makeSpan("converge.compaction", {
              root: true,
              captureStackTrace: false,
              links: linkTo(requester, "started"),
              attributes: {
                "session.key": session.sessionKey,
                "session.id": session.sessionId,
                "compaction.id": compactionId,
                "compaction.reason": reason
              }
            })
            const handle: CompactionHandle = {
              compactionId,
              session,
              reason,
              startedAt: yield* Clock.currentTimeMillis,
              done: yield* Deferred.make<CompactionOutcome, CompactionFailure>(),
              span,
              waiters: { count: 0, waited: false }
            }
            // Registered before the fiber is forked, so a concurrent request joins it.
            handles.set(session.sessionId, handle)
            const body = compactor
              .run(session, handle.compactionId, reason, instructions, (outcome) => commit(handle, outcome))
              .pipe(
                Effect.timeoutFail({
                  duration: Duration.millis(config.compactionTimeoutMs),
                  onTimeout: () => new CompactionTimeout()
                }),
                Effect.withParentSpan(span),
                Effect.onExit((exit) =>
                  Effect.flatMap(settle(handle, exit), (outcome) => observe(handle, outcome))
                )
              )
            // The compaction itself is interruptible (cancel, timeout, shutdown) up to its commit.
            yield* FiberMap.run(fibers, session.sessionId, Effect.interruptible(body))
            return { handle, joined: false }
          })
        )

      /** Waits for a compaction at most `bound`; only the waiter stops when it passes. */
      const await_ = (
        handle: CompactionHandle,
        bound: Duration.DurationInput
      ): Effect.Effect<Option.Option<Exit.Exit<CompactionOutcome, CompactionFailure>>> =>
        Effect.suspend(() => {
          const d = Duration.decode(bound)
          const settled = Deferred.await(handle.done).pipe(Effect.exit)
          // A zero bound is a poll: it must not wait for a clock tick.
          if (Duration.isFinite(d) && Duration.toMillis(d) <= 0) {
            return Effect.flatMap(Deferred.isDone(handle.done), (isDone) =>
              isDone ? Effect.map(settled, Option.some) : Effect.succeed(Option.none())
            )
          }
          const waiting = Duration.isFinite(d)
            ? Effect.timeoutOption(settled, d)
            : Effect.map(settled, Option.some)
          const waiters = handle.waiters
          return Effect.acquireUseRelease(
            Effect.sync(() => {
              waiters.count++
              waiters.waited = true
            }),
            () => waiting,
            () =>
              Effect.sync(() => {
                waiters.count--
              })
          )
        })

      /** Cancels the running compaction of `sessionId` before its commit; false if none ran. */
      const cancel = (sessionId: string): Effect.Effect<boolean> =>
        Effect.gen(function* () {
          const handle = handles.get(sessionId)
          if (handle === undefined) return false
          interrupts.set(handle.compactionId, { reason: "cancelled" })
          yield* FiberMap.remove(fibers, sessionId)
          return true
        })

      /**
       * The session of `sessionKey` goes to another process: its running compaction may finish
       * within `bound`; past it, it is interrupted before its commit and fails with reason
       * `shutdown`. Returns once it settled, so that nothing of this process writes the session
       * afterwards.
       */
      const release = (sessionKey: string, bound: Duration.DurationInput): Effect.Effect<void> =>
        Effect.gen(function* () {
          const running = [...handles.values()].filter((h) => h.session.sessionKey === sessionKey)
          if (running.length === 0) return
          // Finalizers run uninterruptibly: the wait itself must be interruptible for its bound to work.
          yield* Effect.forEach(running, (h) => Deferred.await(h.done).pipe(Effect.exit), {
            discard: true
          }).pipe(Effect.interruptible, Effect.timeoutOption(bound))
          for (const h of running) {
            const id = h.session.sessionId
            if (handles.get(id) !== h) continue
            if (yield* Deferred.isDone(h.done)) {
              // Committed: its fiber only settles now.
              yield* FiberMap.get(fibers, id).pipe(Effect.flatMap(Fiber.await), Effect.ignore)
              continue
            }
            interrupts.set(h.compactionId, {
              reason: "shutdown",
              message: "compaction interrupted: its session moved to another runner"
            })
            yield* FiberMap.remove(fibers, id)
          }
        })

      /** How many compactions are running (0 once everything settled). */
      const size = Effect.sync(() => handles.size)

      /** Lets running compactions finish within `bound`, then interrupts the rest (before their commit). */
      const drain = (bound: Duration.DurationInput): Effect.Effect<void> =>
        Effect.gen(function* () {
          const running = [...handles.values()]
          if (running.length === 0) return
          // Finalizers run uninterruptibly: the wait itself must be interruptible for its bound to work.
          yield* Effect.forEach(running, (h) => Deferred.await(h.done).pipe(Effect.exit), {
            discard: true
          }).pipe(Effect.interruptible, Effect.timeoutOption(bound))
          for (const h of handles.values()) interrupts.set(h.compactionId, { reason: "shutdown" })
          yield* FiberMap.clear(fibers)
        })

      yield* Effect.addFinalizer(() => drain(Duration.millis(config.drainTimeoutMs)))

      return { start, await: await_, cancel, release, inFlight, size, drain } as const
    })
  }
) {}
