/**
 * The lease file `<sessionId>.jsonl.lock`: who may append to a transcript. It holds the
 * owner's pid and a random owner token (two runtimes in one process are two owners) and
 * the time it was last refreshed.
 */
import { Either, Schema } from "effect"

/** The content of a lease file. */
export interface LeaseRecord {
  readonly pid: number
  readonly owner: string
  readonly acquiredAt: number
  readonly refreshedAt: number
}

const LeaseRecordJson = Schema.parseJson(
  Schema.Struct({
    pid: Schema.Number,
    owner: Schema.String,
    acquiredAt: Schema.Number,
    refreshedAt: Schema.Number
  })
)
const decodeRecord = Schema.decodeUnknownEither(LeaseRecordJson)

/** The record in a lease file's text, or `undefined` when it does not decode (being written, or garbage). */
export const parseLeaseRecord = (text: string): LeaseRecord | undefined => {
  const decoded = decodeRecord(text)
  return Either.isRight(decoded) ? decoded.right : undefined
}

/** The text of a lease file. */
export const formatLeaseRecord = (record: LeaseRecord): string => JSON.stringify(record)

/** Whether a process with this pid is running (a process we may not signal is running). */
export const isProcessAlive = (pid: number): boolean => {
  if (pid === process.pid) return true
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as { code?: unknown }).code === "EPERM"
  }
}
