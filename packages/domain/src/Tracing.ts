/**
 * Spans that cost nothing when tracing is off. `Effect.withSpan` makes a no-op span even when
 * the tracer is disabled (a span object, a context entry, a finalizer): on the hot path of a
 * turn that is several of them. `withSpan` here asks the fiber whether tracing is on first
 * and, when it is off, runs the effect as it is. The stack trace is never captured.
 */
import { Effect, FiberRef, Option, type Tracer } from "effect"

/** `Effect.withSpan(name, options)` when tracing is on; the effect unchanged when it is off. */
export const withSpan =
  (name: string, options: Tracer.SpanOptions = {}) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.withFiberRuntime<A, E, R>((fiber) =>
      fiber.getFiberRef(FiberRef.currentTracerEnabled)
        ? Effect.withSpan(self, name, { ...options, captureStackTrace: false })
        : self
    )

/** The current span when tracing is on (none when it is off or there is no span). */
export const currentSpan: Effect.Effect<Option.Option<Tracer.Span>> = Effect.option(Effect.currentSpan)

/** Sets an attribute on the span, if there is one. */
export const attribute = (span: Option.Option<Tracer.Span>, key: string, value: unknown): void => {
  if (Option.isSome(span)) span.value.attribute(key, value)
}
