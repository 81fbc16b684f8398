/**
 * Reading transcript text: lines, sequence numbers and problems. Pure: no Effect runtime,
 * no I/O, so the runner's property tests can compute the reference from a string.
 *
 * The first line of a file is the header and has no seq; the n-th line after it has seq
 * n − 1, malformed lines included. A last line without its newline is torn: it is
 * reported and never counted.
 */
import type { SessionHeader, TranscriptEntry } from "@converge/domain"

/** Something wrong with a transcript that did not stop it from being read. */
export interface Problem {
  readonly kind: "torn" | "malformed" | "unreadable" | "missing"
  /** The 1-based line number in the file (the header is line 1). */
  readonly line?: number
  /** The seq the line has (or, for a torn line, would have had). */
  readonly seq?: number
  readonly message: string
}

/** One entry of a transcript with its seq. */
export interface SeqEntry {
  readonly seq: number
  readonly entry: TranscriptEntry
}

/** One complete line after the header: an entry, or `undefined` when the line is malformed. */
export interface ParsedLine {
  readonly seq: number
  readonly entry: TranscriptEntry | undefined
}

/** A transcript read from text. */
export interface ParsedTranscript {
  /** The header, when the first line is one. */
  readonly header: SessionHeader | undefined
  /** Every complete line after the header, in order: `lines[i].seq === i`. */
  readonly lines: ReadonlyArray<ParsedLine>
  /** Malformed lines, a bad or missing header, and a torn last line. */
  readonly problems: ReadonlyArray<Problem>
}

const KNOWN_TYPES = new Set(["session", "message", "compaction", "custom"])

type Json = Record<string, unknown>

const isObject = (u: unknown): u is Json => typeof u === "object" && u !== null && !Array.isArray(u)
const optString = (o: Json, k: string): boolean => o[k] === undefined || typeof o[k] === "string"
const optNumber = (o: Json, k: string): boolean => o[k] === undefined || typeof o[k] === "number"
const optParent = (o: Json, k: string): boolean =>
  o[k] === undefined || o[k] === null || typeof o[k] === "string"
const base = (o: Json): boolean =>
  typeof o.id === "string" &&
  (o.parentId === null || typeof o.parentId === "string") &&
  typeof o.timestamp === "string"

const isUsage = (u: unknown): boolean =>
  isObject(u) &&
  optNumber(u, "input") &&
  optNumber(u, "output") &&
  optNumber(u, "cacheRead") &&
  optNumber(u, "cacheWrite") &&
  optNumber(u, "totalTokens")

const isMessage = (m: unknown): boolean =>
  isObject(m) &&
  typeof m.role === "string" &&
  "content" in m &&
  (m.usage === undefined || isUsage(m.usage)) &&
  optNumber(m, "timestamp")

/**
 * True when a parsed JSON value is a `TranscriptEntry` of the domain schema. The same
 * checks as `Schema.is(TranscriptEntry)` (a test holds them equal), at the cost of a few
 * `typeof`s, so folding a long file is not dominated by validation.
 */
export const isTranscriptEntry = (u: unknown): u is TranscriptEntry => {
  if (!isObject(u) || typeof u.type !== "string") return false
  switch (u.type) {
    case "message":
      return base(u) && isMessage(u.message) && optNumber(u, "promptSeq")
    case "compaction":
      return (
        base(u) &&
        typeof u.summary === "string" &&
        optParent(u, "firstKeptEntryId") &&
        optNumber(u, "tokensBefore") &&
        optString(u, "compactionId") &&
        optNumber(u, "tokensAfter")
      )
    case "custom":
      return base(u) && optString(u, "customType")
    case "session":
      return false
    default:
      return !KNOWN_TYPES.has(u.type) && optString(u, "id") && optParent(u, "parentId")
  }
}

/** True when a parsed JSON value is a `SessionHeader` of the domain schema. */
export const isSessionHeader = (u: unknown): u is SessionHeader =>
  isObject(u) &&
  u.type === "session" &&
  typeof u.version === "number" &&
  typeof u.id === "string" &&
  typeof u.timestamp === "string" &&
  optString(u, "cwd") &&
  optString(u, "sessionKey")

/** What one line holds: the header, an entry, or a reason it is malformed. */
export type LineValue =
  | { readonly _tag: "Header"; readonly header: SessionHeader }
  | { readonly _tag: "Entry"; readonly entry: TranscriptEntry }
  | { readonly _tag: "Malformed"; readonly reason: string }

const describe = (text: string): string => JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text)

/** Parses one line (without its `\n`; a trailing `\r` is accepted). `lineIndex` 0 is the header slot. */
export const parseLine = (text: string, lineIndex: number): LineValue => {
  if (text.length === 0 || text === "\r") return { _tag: "Malformed", reason: "empty line" }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (e) {
    return {
      _tag: "Malformed",
      reason: `not JSON (${e instanceof Error ? e.message : String(e)}): ${describe(text)}`
    }
  }
  if (lineIndex === 0) {
    return isSessionHeader(value)
      ? { _tag: "Header", header: value }
      : { _tag: "Malformed", reason: `the first line is not a session header: ${describe(text)}` }
  }
  if (isTranscriptEntry(value)) return { _tag: "Entry", entry: value }
  const type = isObject(value) && typeof value.type === "string" ? `a "${value.type}" entry` : "a line"
  return {
    _tag: "Malformed",
    reason: `${type} that does not decode as a transcript entry: ${describe(text)}`
  }
}

/** The problem reported for a malformed line. */
export const malformed = (lineIndex: number, reason: string): Problem =>
  lineIndex === 0
    ? { kind: "malformed", line: 1, message: `line 1 (header): ${reason}` }
    : {
        kind: "malformed",
        line: lineIndex + 1,
        seq: lineIndex - 1,
        message: `line ${lineIndex + 1} (seq ${lineIndex - 1}): ${reason}`
      }

/** The problem reported for a torn last line. */
export const torn = (lineIndex: number, text: string): Problem => ({
  kind: "torn",
  line: lineIndex + 1,
  ...(lineIndex > 0 ? { seq: lineIndex - 1 } : {}),
  message: `line ${lineIndex + 1}${lineIndex > 0 ? ` (seq ${lineIndex - 1})` : " (header)"} is torn (no newline after its ${text.length} characters); skipped, and truncated before the next append`
})

/**
 * Calls `visit` for every complete line of `text`, starting at physical line `firstLine`
 * (0 = the header slot). Returns the text of the torn last line, or `undefined` when the
 * text ends with a newline.
 */
export const forEachLine = (
  text: string,
  firstLine: number,
  visit: (lineIndex: number, line: string) => void
): string | undefined => {
  let start = 0
  let lineIndex = firstLine
  for (;;) {
    const nl = text.indexOf("\n", start)
    if (nl === -1) break
    visit(lineIndex++, text.slice(start, nl))
    start = nl + 1
  }
  return start < text.length ? text.slice(start) : undefined
}

/** Removes a leading byte-order mark. */
export const stripBom = (text: string): string => (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text)

/** Parses a whole transcript: its header, its lines with seqs, and its problems. */
export const parseTranscript = (text: string): ParsedTranscript => {
  let header: SessionHeader | undefined
  const lines: Array<ParsedLine> = []
  const problems: Array<Problem> = []
  let count = 0
  const rest = forEachLine(stripBom(text), 0, (lineIndex, line) => {
    count++
    const value = parseLine(line, lineIndex)
    if (lineIndex === 0) {
      if (value._tag === "Header") header = value.header
      else if (value._tag === "Malformed") problems.push(malformed(0, value.reason))
      return
    }
    if (value._tag === "Entry") lines.push({ seq: lineIndex - 1, entry: value.entry })
    else {
      lines.push({ seq: lineIndex - 1, entry: undefined })
      if (value._tag === "Malformed") problems.push(malformed(lineIndex, value.reason))
    }
  })
  if (rest !== undefined) problems.push(torn(count, rest))
  return { header, lines, problems }
}
