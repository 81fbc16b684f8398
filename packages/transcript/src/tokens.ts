/**
 * Token figures: the snapshot a usage report or a compaction leaves, the order that picks
 * between snapshots (the store's, DESIGN §2.4), and the characters / 4 estimate. Pure.
 */
import { contentChars, type TranscriptEntry, type Usage } from "@converge/domain"
import type { SeqEntry } from "./parse.js"

/** How full the context was as of the transcript entry `asOfSeq`. */
export interface Snapshot {
  readonly context: number
  readonly input?: number
  readonly output?: number
  readonly asOfSeq: number
}

/** The context size a usage report states: `totalTokens`, else `input + output`; `undefined` when it states none. */
export const usageContext = (usage: Usage | undefined): number | undefined => {
  if (usage === undefined) return undefined
  if (usage.totalTokens !== undefined) return usage.totalTokens
  if (usage.input === undefined && usage.output === undefined) return undefined
  return (usage.input ?? 0) + (usage.output ?? 0)
}

/** The snapshot of a usage report that measured the prompt ending at `asOfSeq`. */
export const snapshotOfUsage = (usage: Usage | undefined, asOfSeq: number): Snapshot | undefined => {
  const context = usageContext(usage)
  if (context === undefined || usage === undefined) return undefined
  // Each shape written out: a fold makes one per reply, and spreads in the middle of a literal are slow in V8 11.
  const { input, output } = usage
  if (input !== undefined && output !== undefined) return { context, input, output, asOfSeq }
  if (input !== undefined) return { context, input, asOfSeq }
  if (output !== undefined) return { context, output, asOfSeq }
  return { context, asOfSeq }
}

// The store breaks ties on the canonical JSON of [asOfSeq, total, input, output]; so do we.
const payload = (s: Snapshot): string =>
  `[${s.asOfSeq},${s.context},${s.input ?? "null"},${s.output ?? "null"}]`

/** The store's order on snapshots: greater `asOfSeq` first, ties broken by canonical JSON. */
export const compareSnapshots = (a: Snapshot, b: Snapshot): number => {
  if (a.asOfSeq !== b.asOfSeq) return a.asOfSeq < b.asOfSeq ? -1 : 1
  const pa = payload(a)
  const pb = payload(b)
  return pa < pb ? -1 : pa > pb ? 1 : 0
}

/** The join of two snapshots: the greater by `compareSnapshots`. */
export const joinSnapshots = (a: Snapshot | undefined, b: Snapshot | undefined): Snapshot | undefined =>
  a === undefined ? b : b === undefined ? a : compareSnapshots(a, b) >= 0 ? a : b

/** Characters of an entry that reach the model: message content, a summary; 0 for the rest. */
export const entryChars = (entry: TranscriptEntry): number => {
  const e = entry as Record<string, unknown>
  switch (entry.type) {
    case "message":
      return contentChars((e.message as { content: unknown }).content)
    case "compaction":
    case "branch_summary":
      return typeof e.summary === "string" ? e.summary.length : 0
    case "custom_message":
      return contentChars(e.content)
    default:
      return 0
  }
}

/** Characters / 4, rounded up, of one entry. */
export const estimateEntryTokens = (entry: TranscriptEntry): number => Math.ceil(entryChars(entry) / 4)

/** Characters / 4 of a summary and entries (each rounded up), compaction entries excluded. */
export const estimateTokens = (
  summary: string | undefined,
  entries: ReadonlyArray<{ readonly entry: TranscriptEntry }>
): number => {
  let n = summary === undefined ? 0 : Math.ceil(summary.length / 4)
  for (const { entry } of entries) if (entry.type !== "compaction") n += estimateEntryTokens(entry)
  return n
}

const usageOf = (entry: TranscriptEntry): Usage | undefined => {
  if (entry.type !== "message") return undefined
  const message = (entry as { message: { role: string; usage?: Usage } }).message
  return message.role === "assistant" ? message.usage : undefined
}

/**
 * The token estimate of a context: the usage the model reported for the latest assistant
 * message in it (only one after `since`, the seq of the compaction whose summary heads the
 * context, since an older report measured the prompt before the cut) plus characters / 4
 * of the entries after that message; else characters / 4 of the summary and all entries.
 */
export const contextTokens = (
  summary: string | undefined,
  entries: ReadonlyArray<SeqEntry>,
  since = -1
): number => {
  for (let i = entries.length - 1; i >= 0; i--) {
    const { seq, entry } = entries[i]!
    if (seq <= since) break
    const reported = usageContext(usageOf(entry))
    if (reported !== undefined) return reported + estimateTokens(undefined, entries.slice(i + 1))
  }
  return estimateTokens(summary, entries)
}
