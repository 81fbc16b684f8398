/**
 * Branded identifiers. A `SessionId` becomes part of a file path, so its schema is the
 * one gate between data read from disk and the file system.
 */
import { Schema } from "effect"

const SESSION_KEY_PATTERN = /^[A-Za-z0-9:_.@+-]+$/

/** True for a valid session key, without building a parse error (the hot path of a turn). */
export const isSessionKey = (s: string): boolean =>
  s.length > 0 && s.length <= 256 && SESSION_KEY_PATTERN.test(s)

/** A session key: 1–256 characters of `A-Z a-z 0-9 : _ . @ + -`. */
export const SessionKey = Schema.String.pipe(
  Schema.filter(
    (s) => {
      if (s.length === 0) return "session key must not be empty"
      if (s.length > 256) return `session key is ${s.length} characters long; at most 256 are allowed`
      if (!SESSION_KEY_PATTERN.test(s)) {
        const bad = [...s].find((c) => !SESSION_KEY_PATTERN.test(c)) ?? ""
        return `session key ${JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s)} contains ${JSON.stringify(bad)}; only A-Z a-z 0-9 : _ . @ + - are allowed`
      }
      return true
    },
    { identifier: "SessionKey" }
  ),
  Schema.brand("SessionKey")
)
export type SessionKey = typeof SessionKey.Type

const SESSION_ID_PATTERN = /^[A-Za-z0-9._-]+$/

/** Why a string is not a usable session id, or `undefined` when it is one. */
export const sessionIdProblem = (s: string): string | undefined => {
  if (s.length === 0) return "session id must not be empty"
  if (s.length > 128) return `session id is ${s.length} characters long; at most 128 are allowed`
  if (s.includes("\0")) return "session id must not contain a NUL character"
  if (s.includes("/")) return `session id ${JSON.stringify(s)} must not contain "/"`
  if (s.includes("\\")) return `session id ${JSON.stringify(s)} must not contain "\\"`
  if (s.includes("..")) return `session id ${JSON.stringify(s)} must not contain ".."`
  if (s.startsWith(".")) return `session id ${JSON.stringify(s)} must not start with "."`
  if (!SESSION_ID_PATTERN.test(s)) {
    return `session id ${JSON.stringify(s)} may only contain A-Z a-z 0-9 . _ -`
  }
  return undefined
}

/** A session id: safe as a file name (`<sessionsDir>/<sessionId>.jsonl`), 1–128 characters. */
export const SessionId = Schema.String.pipe(
  Schema.filter((s) => sessionIdProblem(s) ?? true, { identifier: "SessionId" }),
  Schema.brand("SessionId")
)
export type SessionId = typeof SessionId.Type

/** Identifies one turn. */
export const RunId = Schema.NonEmptyString.pipe(Schema.maxLength(128), Schema.brand("RunId"))
export type RunId = typeof RunId.Type

/** Identifies one compaction; the transcript holds at most one entry per id. */
export const CompactionId = Schema.NonEmptyString.pipe(Schema.maxLength(128), Schema.brand("CompactionId"))
export type CompactionId = typeof CompactionId.Type

const hex = (bytes: number): string => {
  let out = ""
  for (let i = 0; i < bytes; i++)
    out += Math.floor(Math.random() * 256)
      .toString(16)
      .padStart(2, "0")
  return out
}

/** A fresh random session id in the UUID v4 shape OpenClaw uses. */
export const makeSessionId = (): SessionId => crypto.randomUUID() as SessionId
/** A fresh run id. */
export const makeRunId = (): RunId => `run_${hex(8)}` as RunId
/** A fresh compaction id. */
export const makeCompactionId = (): CompactionId => `cmp_${hex(8)}` as CompactionId
