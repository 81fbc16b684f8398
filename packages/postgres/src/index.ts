/**
 * @converge/postgres: Converge's state in PostgreSQL (DESIGN §9) — the database layer and
 * its migrations, and the session store's backend whose merge is one SQL statement.
 */
export * as Database from "./Database.js"
export * from "./PgEvents.js"
export * from "./PgIdempotency.js"
export * from "./PgStore.js"
export * from "./PgTranscript.js"
export { fromRow, mergeCallSql, mergeFunctionSql, mergeSql, toRow, utf16Key } from "./sessionRow.js"
