/**
 * The recovery fold: what a transcript says about its session (header, compactions, the
 * token snapshot, last seq, last activity), computed line by line so that it can resume
 * from where it stopped. Pure: the `Transcript` service and the runner's reference model
 * run the same steps.
 */
import type { SessionHeader, TranscriptEntry, Usage } from "@converge/domain"
import {
  forEachLine,
  type LineValue,
  malformed,
  type ParsedTranscript,
  type Problem,
  parseLine,
  stripBom,
  torn
} from "./parse.js"
import { joinSnapshots, type Snapshot, snapshotOfUsage } from "./tokens.js"

/** The last compaction entry of a transcript: `index` is its position among all compaction entries (1, 2, 3 …). */
export interface FoldCompaction {
  /** Its `compactionId`, or its entry `id` when another tool wrote it without one. */
  readonly id: string
  readonly index: number
  readonly seq: number
  /** Its timestamp, epoch ms. */
  readonly at: number
  readonly tokensBefore?: number
  readonly tokensAfter?: number
}

/** What a transcript says about its session: the input of recovery and of rebuilding `sessions.json`. */
export interface Fold {
  readonly header: { readonly sessionId: string; readonly sessionKey?: string; readonly startedAt: number }
  /** How many compaction entries the file holds (all branches). */
  readonly compactionIndex: number
  readonly lastCompaction?: FoldCompaction
  /** The greatest snapshot by the store's order: usage reports and compactions' `tokensAfter`. */
  readonly snapshot?: Snapshot
  /** The seq of the last complete line (−1 when there is none after the header). */
  readonly lastSeq: number
  /** The timestamp of the last entry, epoch ms (the header's when there is none). */
  readonly lastActivityAt: number
  readonly problems: ReadonlyArray<Problem>
}

/** The last compaction entry as the fold keeps it. */
export interface CompactionRecord {
  readonly id: string
  readonly seq: number
  readonly at: number
  readonly tokensBefore?: number
  readonly tokensAfter?: number
}

/**
 * The fold's running state: plain JSON, so it can be kept beside a transcript and resumed
 * from the byte offset it was taken at.
 */
export interface FoldState {
  readonly sessionId: string
  /** Whether the first line (the header slot) was read, valid or not. */
  headerLine: boolean
  /** Whether that line is a valid header. */
  hasHeader: boolean
  sessionKey: string | undefined
  /** The header's timestamp, epoch ms. */
  startedAt: number | undefined
  firstTimestamp: string | undefined
  lastTimestamp: string | undefined
  /** The seq the next line gets. */
  nextSeq: number
  /** The id of the last entry that has one: the next entry's `parentId`. */
  lastId: string | undefined
  /** The seq of the last `message` entry (where a prompt without `promptSeq` ended). */
  lastMessageSeq: number
  /** How many compaction entries were read. */
  compactionIndex: number
  lastCompaction: CompactionRecord | undefined
  snapshot: Snapshot | undefined
  problems: Array<Problem>
  droppedProblems: number
}

/** At most this many problems are listed; the rest are counted. */
export const MAX_PROBLEMS = 200

/** The state of a fold that has read nothing yet. */
export const initialFoldState = (sessionId: string): FoldState => ({
  sessionId,
  headerLine: false,
  hasHeader: false,
  sessionKey: undefined,
  startedAt: undefined,
  firstTimestamp: undefined,
  lastTimestamp: undefined,
  nextSeq: 0,
  lastId: undefined,
  lastMessageSeq: -1,
  compactionIndex: 0,
  lastCompaction: undefined,
  snapshot: undefined,
  problems: [],
  droppedProblems: 0
})

/** A copy that later steps do not share. */
export const copyFoldState = (s: FoldState): FoldState => ({
  ...s,
  problems: [...s.problems]
})

const ms = (iso: string | undefined): number | undefined => {
  if (iso === undefined) return undefined
  const t = Date.parse(iso)
  return Number.isNaN(t) ? undefined : t
}

/** Records a problem (the first `MAX_PROBLEMS` are listed). */
export const addProblem = (s: FoldState, problem: Problem): void => {
  if (s.problems.length < MAX_PROBLEMS) s.problems.push(problem)
  else s.droppedProblems++
}

/** Folds the header. */
export const foldHeader = (s: FoldState, header: SessionHeader): void => {
  s.headerLine = true
  s.hasHeader = true
  s.sessionKey = header.sessionKey
  s.startedAt = ms(header.timestamp)
  if (header.id !== s.sessionId) {
    addProblem(s, {
      kind: "malformed",
      line: 1,
      message: `line 1 (header): the header names session ${JSON.stringify(header.id)}, the file ${JSON.stringify(s.sessionId)}; the file name is used`
    })
  }
}

/** Folds the entry at the next seq (`undefined`: a malformed line, which only takes its seq). */
export const foldEntry = (s: FoldState, entry: TranscriptEntry | undefined): void => {
  const seq = s.nextSeq++
  if (entry === undefined) return
  const e = entry as Record<string, unknown>
  if (typeof e.id === "string") s.lastId = e.id
  if (typeof e.timestamp === "string") {
    s.lastTimestamp = e.timestamp
    if (s.firstTimestamp === undefined) s.firstTimestamp = e.timestamp
  }
  if (entry.type === "message") {
    const message = e.message as { role: string; usage?: Usage }
    if (message.role === "assistant" && message.usage !== undefined) {
      const asOfSeq = typeof e.promptSeq === "number" ? e.promptSeq : s.lastMessageSeq
      s.snapshot = joinSnapshots(s.snapshot, snapshotOfUsage(message.usage, asOfSeq))
    }
    s.lastMessageSeq = seq
  } else if (entry.type === "compaction") {
    const tokensBefore = e.tokensBefore as number | undefined
    const tokensAfter = e.tokensAfter as number | undefined
    s.compactionIndex++
    s.lastCompaction = {
      id: typeof e.compactionId === "string" ? e.compactionId : (e.id as string),
      seq,
      at: ms(e.timestamp as string) ?? 0,
      ...(tokensBefore !== undefined ? { tokensBefore } : {}),
      ...(tokensAfter !== undefined ? { tokensAfter } : {})
    }
    if (tokensAfter !== undefined)
      s.snapshot = joinSnapshots(s.snapshot, { context: tokensAfter, asOfSeq: seq })
  }
}

/** Folds one parsed line at physical line `lineIndex` (0 = the header slot), recording its problem if any. */
export const foldLine = (s: FoldState, lineIndex: number, value: LineValue): void => {
  if (value._tag === "Malformed") addProblem(s, malformed(lineIndex, value.reason))
  if (lineIndex === 0) {
    s.headerLine = true
    if (value._tag === "Header") foldHeader(s, value.header)
    return
  }
  foldEntry(s, value._tag === "Entry" ? value.entry : undefined)
}

/**
 * Folds the lines of `text`, which starts at physical line `firstLine`. Returns the torn
 * last line's problem, or `undefined` when the text ends with a newline.
 */
export const foldText = (s: FoldState, text: string, firstLine: number): Problem | undefined => {
  const rest = forEachLine(firstLine === 0 ? stripBom(text) : text, firstLine, (lineIndex, line) =>
    foldLine(s, lineIndex, parseLine(line, lineIndex))
  )
  return rest === undefined ? undefined : torn(nextLine(s), rest)
}

/** The physical index of the next line (0 = the header slot). */
export const nextLine = (s: FoldState): number => (s.headerLine ? s.nextSeq + 1 : 0)

/** The fold a state stands for, with `extra` problems (a torn tail) after its own. */
export const finishFold = (s: FoldState, extra: ReadonlyArray<Problem> = []): Fold => {
  const problems = [...s.problems]
  if (s.droppedProblems > 0) {
    problems.push({ kind: "malformed", message: `${s.droppedProblems} more malformed lines are not listed` })
  }
  problems.push(...extra)
  const startedAt = s.startedAt ?? ms(s.firstTimestamp) ?? 0
  const last = s.lastCompaction
  return {
    header: {
      sessionId: s.sessionId,
      ...(s.sessionKey !== undefined ? { sessionKey: s.sessionKey } : {}),
      startedAt
    },
    compactionIndex: s.compactionIndex,
    ...(last !== undefined
      ? {
          lastCompaction: {
            id: last.id,
            index: s.compactionIndex,
            seq: last.seq,
            at: last.at,
            ...(last.tokensBefore !== undefined ? { tokensBefore: last.tokensBefore } : {}),
            ...(last.tokensAfter !== undefined ? { tokensAfter: last.tokensAfter } : {})
          }
        }
      : {}),
    ...(s.snapshot !== undefined ? { snapshot: s.snapshot } : {}),
    lastSeq: s.nextSeq - 1,
    lastActivityAt: ms(s.lastTimestamp) ?? startedAt,
    problems
  }
}

/** The fold of a whole transcript text. */
export const foldTranscript = (sessionId: string, text: string): Fold => {
  const s = initialFoldState(sessionId)
  const tornProblem = foldText(s, text, 0)
  return finishFold(s, tornProblem === undefined ? [] : [tornProblem])
}

/** The fold of a parsed transcript (`parseTranscript`); its problems are the parse's. */
export const foldParsed = (sessionId: string, parsed: ParsedTranscript): Fold => {
  const s = initialFoldState(sessionId)
  if (parsed.header !== undefined) foldHeader(s, parsed.header)
  for (const line of parsed.lines) foldEntry(s, line.entry)
  const own = s.problems
  s.problems = []
  return finishFold(s, [...own, ...parsed.problems])
}
