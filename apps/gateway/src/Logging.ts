/**
 * Structured logs: one JSON object per line on stdout, with the log annotations
 * (`sessionKey`, `runId`, `compactionId`, …) as top-level fields.
 */
import { Cause, Effect, HashMap, type Layer, Logger } from "effect"

const render = (message: unknown): unknown => {
  if (Array.isArray(message)) return message.length === 1 ? render(message[0]) : message.map(render)
  if (message instanceof Error) return message.message
  return message
}

const stringify = (value: unknown): string => {
  try {
    return JSON.stringify(value, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v))
  } catch {
    return JSON.stringify({ message: String(value) })
  }
}

/** Formats one log entry as a JSON line. */
export const formatLine = (options: Logger.Logger.Options<unknown>): string => {
  const line: Record<string, unknown> = {
    time: options.date.toISOString(),
    level: options.logLevel.label,
    message: render(options.message)
  }
  // An annotation never hides the time, level or message of its line.
  for (const [key, value] of HashMap.toEntries(options.annotations)) if (!(key in line)) line[key] = value
  if (!Cause.isEmpty(options.cause)) line.cause = Cause.pretty(options.cause)
  return stringify(line)
}

/** The JSON-lines logger, writing to `write` (stdout by default). */
export const jsonLogger = (write: (line: string) => void = (line) => process.stdout.write(`${line}\n`)) =>
  Logger.make<unknown, void>((options) => write(formatLine(options)))

/** Replaces the default logger with JSON lines on stdout. */
export const layer: Layer.Layer<never> = Logger.replace(Logger.defaultLogger, jsonLogger())

/** Annotates the logs of `effect` with the ids a reader searches by, skipping absent ones. */
export const withIds =
  (ids: {
    readonly sessionKey?: string | undefined
    readonly runId?: string | undefined
    readonly compactionId?: string | undefined
  }) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
    const present: Record<string, string> = {}
    for (const [key, value] of Object.entries(ids)) if (value !== undefined) present[key] = value
    return Effect.annotateLogs(effect, present)
  }
