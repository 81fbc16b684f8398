/**
 * @converge/transcript: pi v3 JSONL transcripts with sequence numbers, leased appends,
 * idempotent compaction append, context building and the recovery fold.
 */
export { branchOf, type Context, CONTEXT_TYPES, contextOf, entriesSinceCut } from "./context.js"
export {
  type CompactionRecord,
  copyFoldState,
  finishFold,
  type Fold,
  type FoldCompaction,
  type FoldState,
  foldEntry,
  foldHeader,
  foldLine,
  foldParsed,
  foldText,
  foldTranscript,
  initialFoldState,
  nextLine
} from "./fold.js"
export {
  isSessionHeader,
  isTranscriptEntry,
  type LineValue,
  type ParsedLine,
  type ParsedTranscript,
  type Problem,
  parseLine,
  parseTranscript,
  type SeqEntry
} from "./parse.js"
export {
  compareSnapshots,
  contextTokens,
  entryChars,
  estimateEntryTokens,
  estimateTokens,
  joinSnapshots,
  type Snapshot,
  snapshotOfUsage,
  usageContext
} from "./tokens.js"
export {
  type Appended,
  type AppendOptions,
  type CacheStats,
  type CompactionAppended,
  type CompactionBuild,
  type CompactionRequest,
  compactionEntry,
  completeEntry,
  type NewEntry,
  newEntryId,
  PARSED_BYTES_PER_FILE_BYTE,
  sessionHeader,
  timedAppend,
  Transcript,
  type TranscriptOptions,
  type TranscriptRead
} from "./Transcript.js"
