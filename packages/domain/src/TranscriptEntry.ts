/**
 * Transcript lines in the pi v3 JSONL format. Every entry keeps the fields it does not
 * name, and an entry whose `type` is unknown is kept whole.
 */
import { Schema } from "effect"

const Rest = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/** The first line of a transcript. Converge adds `sessionKey` to the headers it writes. */
export const SessionHeader = Schema.Struct(
  {
    type: Schema.Literal("session"),
    version: Schema.Number,
    id: Schema.String,
    timestamp: Schema.String,
    cwd: Schema.optional(Schema.String),
    sessionKey: Schema.optional(Schema.String)
  },
  Rest
)
export type SessionHeader = typeof SessionHeader.Type

/** Token usage as pi records it on an assistant message. */
export const Usage = Schema.Struct(
  {
    input: Schema.optional(Schema.Number),
    output: Schema.optional(Schema.Number),
    cacheRead: Schema.optional(Schema.Number),
    cacheWrite: Schema.optional(Schema.Number),
    totalTokens: Schema.optional(Schema.Number)
  },
  Rest
)
export type Usage = typeof Usage.Type

/** A pi message: `role`, `content` (a string or content blocks), `usage` on replies. */
export const Message = Schema.Struct(
  {
    role: Schema.String,
    content: Schema.Unknown,
    usage: Schema.optional(Usage),
    timestamp: Schema.optional(Schema.Number)
  },
  Rest
)
export type Message = typeof Message.Type

const entryBase = {
  id: Schema.String,
  parentId: Schema.NullOr(Schema.String),
  timestamp: Schema.String
}

/** A `message` entry; assistant entries Converge writes carry `promptSeq`. */
export const MessageEntry = Schema.Struct(
  {
    type: Schema.Literal("message"),
    ...entryBase,
    message: Message,
    promptSeq: Schema.optional(Schema.Number)
  },
  Rest
)
export type MessageEntry = typeof MessageEntry.Type

/** A `compaction` entry; Converge adds `compactionId` and `tokensAfter`. */
export const CompactionEntry = Schema.Struct(
  {
    type: Schema.Literal("compaction"),
    ...entryBase,
    summary: Schema.String,
    firstKeptEntryId: Schema.optional(Schema.NullOr(Schema.String)),
    tokensBefore: Schema.optional(Schema.Number),
    compactionId: Schema.optional(Schema.String),
    tokensAfter: Schema.optional(Schema.Number)
  },
  Rest
)
export type CompactionEntry = typeof CompactionEntry.Type

/** A `custom` entry (extension data, not part of the model's context). */
export const CustomEntry = Schema.Struct(
  {
    type: Schema.Literal("custom"),
    ...entryBase,
    customType: Schema.optional(Schema.String),
    data: Schema.optional(Schema.Unknown)
  },
  Rest
)
export type CustomEntry = typeof CustomEntry.Type

const KNOWN_TYPES = new Set(["session", "message", "compaction", "custom"])

/** Any other entry type, kept exactly as it is. */
export const OtherEntry = Schema.Struct(
  {
    type: Schema.String.pipe(Schema.filter((t) => !KNOWN_TYPES.has(t), { identifier: "OtherEntryType" })),
    id: Schema.optional(Schema.String),
    parentId: Schema.optional(Schema.NullOr(Schema.String))
  },
  Rest
)
export type OtherEntry = typeof OtherEntry.Type

/** An entry after the header. */
export const TranscriptEntry = Schema.Union(MessageEntry, CompactionEntry, CustomEntry, OtherEntry)
export type TranscriptEntry = typeof TranscriptEntry.Type

/** Any line of a transcript, header included. */
export const TranscriptLine = Schema.Union(SessionHeader, TranscriptEntry)
export type TranscriptLine = typeof TranscriptLine.Type

/** Decodes one JSON line. */
export const TranscriptLineFromJson = Schema.parseJson(TranscriptLine)

/** Characters of a message's text content (the basis of the characters/4 estimate). */
export const contentChars = (content: unknown): number => {
  if (typeof content === "string") return content.length
  if (Array.isArray(content)) {
    let n = 0
    for (const block of content) {
      if (block && typeof block === "object") {
        const b = block as Record<string, unknown>
        if (typeof b.text === "string") n += b.text.length
        else if (typeof b.thinking === "string") n += b.thinking.length
        else n += JSON.stringify(b).length
      } else if (typeof block === "string") n += block.length
    }
    return n
  }
  return content === undefined || content === null ? 0 : JSON.stringify(content).length
}

/** The text of a message's content. */
export const contentText = (content: unknown): string => {
  if (typeof content === "string") return content
  if (Array.isArray(content)) {
    return content
      .map((b) =>
        typeof b === "string"
          ? b
          : b && typeof b === "object" && typeof (b as { text?: unknown }).text === "string"
            ? (b as { text: string }).text
            : ""
      )
      .join("")
  }
  return ""
}

/**
 * The system prompt of a summary request starts with this; the local model (testkit)
 * recognizes summary requests by it.
 */
export const SUMMARY_PROMPT_PREFIX = "Summarize the conversation so far"
