/**
 * @converge/testkit: the deterministic local model (the gateway's embedded default),
 * in-memory and fault-injecting file systems, for Converge and for those who embed it.
 */
export * as FaultFileSystem from "./FaultFileSystem.js"
export { FaultControl } from "./FaultFileSystem.js"
export * as MemoryFileSystem from "./MemoryFileSystem.js"
export * as LocalModel from "./LocalModel.js"
export {
  CALL_LOG_LIMIT,
  isContextOverflow,
  isTransient,
  LocalModelControl,
  SUMMARY_PROMPT_PREFIX
} from "./LocalModel.js"
