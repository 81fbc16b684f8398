/**
 * The model's context, with pi's semantics: the branch that ends at the last entry; on it,
 * the latest compaction's summary, the entries from its `firstKeptEntryId` up to it, then
 * everything after it. Compaction entries themselves, and entries that never reach the
 * model (`custom`, settings changes, …), are left out. Pure.
 */
import type { CompactionEntry } from "@converge/domain"
import type { SeqEntry } from "./parse.js"
import { contextTokens } from "./tokens.js"

/** What the model is sent: the summary, the entries after it, their token estimate, and the seq of the last one. */
export interface Context {
  readonly summary?: string
  readonly entries: ReadonlyArray<SeqEntry>
  /** Model-reported usage where known, characters / 4 otherwise (`contextTokens`). */
  readonly tokens: number
  /** The seq of the context's last entry (the `promptSeq` of a reply to it); −1 when empty. */
  readonly lastSeq: number
  /** The seq of the compaction whose summary heads the context. */
  readonly compactionSeq?: number
}

/** Entry types that reach the model. */
export const CONTEXT_TYPES: ReadonlySet<string> = new Set(["message", "branch_summary", "custom_message"])

const idOf = (e: SeqEntry): string | undefined => {
  const id = (e.entry as { id?: unknown }).id
  return typeof id === "string" ? id : undefined
}

const parentOf = (e: SeqEntry): string | null | undefined => {
  const parent = (e.entry as { parentId?: unknown }).parentId
  return typeof parent === "string" || parent === null ? parent : undefined
}

/**
 * The branch that ends at the last entry with an id, root first, following `parentId`. Where
 * a link is broken (a parent that is not in the file, as after a malformed line), the
 * entries before the break are taken in file order, as a linear transcript would be.
 */
export const branchOf = (entries: ReadonlyArray<SeqEntry>): ReadonlyArray<SeqEntry> => {
  const byId = new Map<string, number>()
  let leaf = -1
  for (let i = 0; i < entries.length; i++) {
    const id = idOf(entries[i]!)
    if (id !== undefined) {
      byId.set(id, i)
      leaf = i
    }
  }
  if (leaf === -1) return entries
  const picked: Array<number> = []
  let i = leaf
  for (;;) {
    picked.push(i)
    const parent = parentOf(entries[i]!)
    if (parent === null) break
    const j = parent === undefined ? undefined : byId.get(parent)
    if (j === undefined || j >= i) {
      for (let k = i - 1; k >= 0; k--) picked.push(k)
      break
    }
    i = j
  }
  const branch: Array<SeqEntry> = []
  for (let k = picked.length - 1; k >= 0; k--) branch.push(entries[picked[k]!]!)
  return branch
}

/** The context of a transcript's entries (in file order, malformed lines left out). */
export const contextOf = (entries: ReadonlyArray<SeqEntry>): Context => {
  const branch = branchOf(entries)
  let c = -1
  for (let i = branch.length - 1; i >= 0; i--) {
    if (branch[i]!.entry.type === "compaction") {
      c = i
      break
    }
  }
  const keep = (e: SeqEntry) => CONTEXT_TYPES.has(e.entry.type)
  if (c === -1) {
    const selected = branch.filter(keep)
    return {
      entries: selected,
      tokens: contextTokens(undefined, selected),
      lastSeq: selected.length > 0 ? selected[selected.length - 1]!.seq : -1
    }
  }
  const compaction = branch[c]! as { readonly seq: number; readonly entry: CompactionEntry }
  const firstKept = compaction.entry.firstKeptEntryId
  let start = c
  if (typeof firstKept === "string") {
    for (let i = c - 1; i >= 0; i--) {
      if (idOf(branch[i]!) === firstKept) {
        start = i
        break
      }
    }
  }
  const selected = [...branch.slice(start, c), ...branch.slice(c + 1)].filter(keep)
  return {
    summary: compaction.entry.summary,
    entries: selected,
    tokens: contextTokens(compaction.entry.summary, selected, compaction.seq),
    lastSeq: selected.length > 0 ? selected[selected.length - 1]!.seq : compaction.seq,
    compactionSeq: compaction.seq
  }
}

/**
 * The entries a compaction that cuts at `firstKeptEntryId` keeps: those of the current
 * context from that entry on; `undefined` when the entry is not in the context.
 */
export const entriesSinceCut = (
  context: Context,
  firstKeptEntryId: string
): ReadonlyArray<SeqEntry> | undefined => {
  const i = context.entries.findIndex((e) => idOf(e) === firstKeptEntryId)
  return i === -1 ? undefined : context.entries.slice(i)
}
