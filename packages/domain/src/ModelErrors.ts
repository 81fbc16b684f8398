/**
 * How a provider error is classified: a context overflow (compact and retry once), a
 * transient failure (retry with backoff), or neither. Shared by the runner and the local
 * model, and recognizing OpenAI's and Anthropic's shapes as well as the local model's.
 */

const OVERFLOW_PATTERN =
  /context_length_exceeded|prompt is too long|maximum context length|exceeds? the context (window|limit)|input is too long/i
const TRANSIENT_PATTERN =
  /overloaded|rate[_ ]limit|temporarily unavailable|service unavailable|ECONNRESET|ETIMEDOUT|socket hang up/i
// A 429 for an exhausted quota will not clear by retrying.
const PERMANENT_PATTERN = /insufficient_quota|billing/i
const TRANSIENT_STATUS = new Set([408, 425, 429, 500, 502, 503, 504, 529])

const field = (value: unknown, key: string): unknown =>
  typeof value === "object" && value !== null ? (value as Record<string, unknown>)[key] : undefined

/** All the text an error carries (message, description, body, code, nested causes). */
const errorTexts = (error: unknown, depth = 0): ReadonlyArray<string> => {
  if (typeof error === "string") return [error]
  if (typeof error !== "object" || error === null || depth > 3) return []
  const texts: Array<string> = []
  for (const key of ["message", "description", "body", "code", "type"]) {
    const value = field(error, key)
    if (typeof value === "string") texts.push(value)
  }
  for (const key of ["error", "cause"]) texts.push(...errorTexts(field(error, key), depth + 1))
  return texts
}

const statusOf = (error: unknown): number | undefined => {
  for (const candidate of [
    field(field(error, "response"), "status"),
    field(error, "status"),
    field(error, "statusCode")
  ]) {
    if (typeof candidate === "number") return candidate
  }
  return undefined
}

/**
 * Whether `error` says the prompt did not fit the model's context window: the local
 * model's overflow, OpenAI's `context_length_exceeded`, Anthropic's "prompt is too long".
 */
export const isContextOverflow = (error: unknown): boolean =>
  errorTexts(error).some((text) => OVERFLOW_PATTERN.test(text))

/**
 * Whether `error` is worth retrying: overloaded / rate limited / 5xx from any provider
 * (status 408, 425, 429, 500, 502, 503, 504, 529) or a transport failure; never an overflow.
 */
export const isTransient = (error: unknown): boolean => {
  if (isContextOverflow(error)) return false
  const texts = errorTexts(error)
  if (texts.some((text) => PERMANENT_PATTERN.test(text))) return false
  const status = statusOf(error)
  if (status !== undefined && TRANSIENT_STATUS.has(status)) return true
  if (field(error, "_tag") === "HttpRequestError" && field(error, "reason") === "Transport") return true
  return texts.some((text) => TRANSIENT_PATTERN.test(text))
}
