/**
 * The resume index `<sessionsDir>/transcripts.resume.json`: per session, the fold as of a
 * byte offset and the fingerprint of the line that ends there. A later fold trusts an entry
 * only if the file still holds that exact line at that place; otherwise it folds the whole
 * file. One file for the directory, so start-up reads it once, not once per session.
 */
import { Either, Schema } from "effect"
import type { FoldState } from "../fold.js"

const Problem = Schema.Struct({
  kind: Schema.Literal("torn", "malformed", "unreadable", "missing"),
  line: Schema.optionalWith(Schema.Number, { exact: true }),
  seq: Schema.optionalWith(Schema.Number, { exact: true }),
  message: Schema.String
})

const Snapshot = Schema.Struct({
  context: Schema.Number,
  input: Schema.optionalWith(Schema.Number, { exact: true }),
  output: Schema.optionalWith(Schema.Number, { exact: true }),
  asOfSeq: Schema.Number
})

const CompactionRecord = Schema.Struct({
  id: Schema.String,
  seq: Schema.Number,
  at: Schema.Number,
  tokensBefore: Schema.optionalWith(Schema.Number, { exact: true }),
  tokensAfter: Schema.optionalWith(Schema.Number, { exact: true })
})

const FoldStateJson = Schema.Struct({
  sessionId: Schema.String,
  headerLine: Schema.Boolean,
  hasHeader: Schema.Boolean,
  sessionKey: Schema.optionalWith(Schema.String, { exact: true }),
  startedAt: Schema.optionalWith(Schema.Number, { exact: true }),
  firstTimestamp: Schema.optionalWith(Schema.String, { exact: true }),
  lastTimestamp: Schema.optionalWith(Schema.String, { exact: true }),
  nextSeq: Schema.Number,
  lastId: Schema.optionalWith(Schema.String, { exact: true }),
  lastMessageSeq: Schema.Number,
  compactionIndex: Schema.Number,
  lastCompaction: Schema.optionalWith(CompactionRecord, { exact: true }),
  snapshot: Schema.optionalWith(Snapshot, { exact: true }),
  problems: Schema.Array(Problem),
  droppedProblems: Schema.Number
})

/** Where a fold stopped: the state, the end of its last complete line, and that line's fingerprint. */
export interface Resume {
  readonly fold: FoldState
  /** Bytes of complete lines folded (the next append starts here). */
  readonly endOffset: number
  /** Where the last complete line starts. */
  readonly checkStart: number
  /** `fingerprint` of the bytes `[checkStart, endOffset)`. */
  readonly checkHash: number
}

const ResumeJson = Schema.Struct({
  endOffset: Schema.Number,
  checkStart: Schema.Number,
  checkHash: Schema.Number,
  fold: FoldStateJson
})

const decodeResume = Schema.decodeUnknownEither(ResumeJson)

/** The name of the resume index in a sessions directory. */
export const RESUME_INDEX = "transcripts.resume.json"

/** The entries of a resume index's text, undecoded (each is decoded when its session is folded); empty when the text is not an index. */
export const parseIndex = (text: string): Map<string, unknown> => {
  try {
    const json: unknown = JSON.parse(text)
    if (typeof json !== "object" || json === null || (json as { version?: unknown }).version !== 1)
      return new Map()
    const sessions = (json as { sessions?: unknown }).sessions
    if (typeof sessions !== "object" || sessions === null) return new Map()
    return new Map(Object.entries(sessions))
  } catch {
    return new Map()
  }
}

/** The resume state of an index entry, if it decodes and belongs to `sessionId`. */
export const decodeEntry = (value: unknown, sessionId: string): Resume | undefined => {
  const decoded = decodeResume(value)
  if (Either.isLeft(decoded)) return undefined
  const r = decoded.right
  if (r.fold.sessionId !== sessionId || r.checkStart > r.endOffset) return undefined
  const f = r.fold
  return {
    endOffset: r.endOffset,
    checkStart: r.checkStart,
    checkHash: r.checkHash,
    fold: {
      sessionId: f.sessionId,
      headerLine: f.headerLine,
      hasHeader: f.hasHeader,
      sessionKey: f.sessionKey,
      startedAt: f.startedAt,
      firstTimestamp: f.firstTimestamp,
      lastTimestamp: f.lastTimestamp,
      nextSeq: f.nextSeq,
      lastId: f.lastId,
      lastMessageSeq: f.lastMessageSeq,
      compactionIndex: f.compactionIndex,
      lastCompaction: f.lastCompaction,
      snapshot: f.snapshot,
      problems: [...f.problems],
      droppedProblems: f.droppedProblems
    }
  }
}

/** The text of a resume index holding `entries` (resume states, or undecoded entries kept from the file). */
export const formatIndex = (entries: ReadonlyMap<string, unknown>): string =>
  JSON.stringify({ version: 1, sessions: Object.fromEntries(entries) })
