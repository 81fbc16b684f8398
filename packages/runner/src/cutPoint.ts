/**
 * Where a compaction cuts the context: keep the most recent `keepRecentTokens`, summarize
 * what is before, and never separate a tool call from its result.
 */
import type { TranscriptEntry } from "@converge/domain"
import { estimateEntryTokens } from "@converge/transcript"

const isToolResult = (entry: TranscriptEntry): boolean => {
  if (entry.type !== "message") return false
  const message = (entry as { message: { role: string; content: unknown } }).message
  if (message.role === "toolResult" || message.role === "tool") return true
  return (
    Array.isArray(message.content) &&
    message.content.some(
      (b) => b && typeof b === "object" && (b as { type?: unknown }).type === "tool_result"
    )
  )
}

/**
 * The index of the first entry to keep, or `undefined` when nothing can be summarized
 * (the whole context is recent, or no valid cut leaves anything before it).
 */
export const chooseCut = (
  entries: ReadonlyArray<{ readonly entry: TranscriptEntry }>,
  keepRecentTokens: number
): number | undefined => {
  let kept = 0
  let cut = entries.length
  while (cut > 0 && kept < keepRecentTokens) {
    cut--
    kept += estimateEntryTokens(entries[cut]!.entry)
  }
  // A tool result stays with the call before it: move the cut back past results.
  while (cut > 0 && cut < entries.length && isToolResult(entries[cut]!.entry)) cut--
  // Entries that are not messages (custom, …) carry no context: do not start the kept part with them.
  while (cut < entries.length && entries[cut]!.entry.type !== "message") cut++
  if (cut <= 0 || cut >= entries.length) return undefined
  return cut
}
