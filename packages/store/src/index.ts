/**
 * @converge/store: the session store (DESIGN §2.4, §4, §5) — pure merge functions, the
 * `SessionStore` service and its memory and JSON file backends.
 */
export * from "./merge.js"
export * from "./SessionStore.js"
export { type ParsedSessionsFile, parseSessionsFile, type Unreadable } from "./internal/fileBackend.js"
export type { Backend, Loaded, Persisted } from "./internal/backend.js"
