/**
 * The tagged errors that cross the HTTP API and the facade. Each carries a readable
 * `message`; `status` is the HTTP status the gateway answers with.
 */
import { Schema } from "effect"

/** No session is stored under this key. (404) */
export class SessionNotFound extends Schema.TaggedError<SessionNotFound>()("SessionNotFound", {
  sessionKey: Schema.String,
  message: Schema.String
}) {
  static readonly status = 404
  static of(sessionKey: string) {
    return new SessionNotFound({
      sessionKey,
      message: `no session is stored under the key ${JSON.stringify(sessionKey)}`
    })
  }
}

/** The entry on disk cannot be served (for example its `sessionId` fails the id schema). (422) */
export class SessionUnavailable extends Schema.TaggedError<SessionUnavailable>()("SessionUnavailable", {
  sessionKey: Schema.String,
  message: Schema.String
}) {
  static readonly status = 422
}

/** The session's lane already holds `laneQueue` turns. (409) */
export class LaneFull extends Schema.TaggedError<LaneFull>()("LaneFull", {
  sessionKey: Schema.String,
  message: Schema.String
}) {
  static readonly status = 409
}

/** Another live process holds the transcript lease of this session. (409) */
export class SessionLeased extends Schema.TaggedError<SessionLeased>()("SessionLeased", {
  sessionId: Schema.String,
  message: Schema.String
}) {
  static readonly status = 409
}

/** `sessions.json` could not be read; it was moved aside to `movedTo`. */
export class StoreCorrupt extends Schema.TaggedError<StoreCorrupt>()("StoreCorrupt", {
  path: Schema.String,
  movedTo: Schema.optional(Schema.String),
  message: Schema.String
}) {
  static readonly status = 500
}

/** A string that is not a usable session id. (400) */
export class InvalidSessionId extends Schema.TaggedError<InvalidSessionId>()("InvalidSessionId", {
  sessionId: Schema.String,
  message: Schema.String
}) {
  static readonly status = 400
}

/** A string that is not a valid session key. (400) */
export class InvalidSessionKey extends Schema.TaggedError<InvalidSessionKey>()("InvalidSessionKey", {
  sessionKey: Schema.String,
  message: Schema.String
}) {
  static readonly status = 400
}

/** A configuration value that does not decode; names the variable and the value. */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  variable: Schema.String,
  value: Schema.String,
  message: Schema.String
}) {}

/** The runtime is shutting down and takes no new work. (503) */
export class ShuttingDown extends Schema.TaggedError<ShuttingDown>()("ShuttingDown", {
  message: Schema.String
}) {
  static readonly status = 503
}

/**
 * The runtime cannot take another turn now: the turns already admitted would not be done within
 * the admission budget (`CONVERGE_ADMISSION_MS`), or `CONVERGE_MAX_TURNS` are in flight. Nothing
 * was run or written; retry after `retryAfterMs`. (503 with `Retry-After`)
 */
export class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", {
  message: Schema.String,
  retryAfterMs: Schema.Int
}) {
  static readonly status = 503
}

/**
 * The database this runtime keeps its state in cannot be reached for what the request needs
 * (`CONVERGE_DATABASE_URL`). Nothing acknowledged is lost; retry after `retryAfterMs`.
 * (503 with `Retry-After`)
 */
export class StorageUnavailable extends Schema.TaggedError<StorageUnavailable>()("StorageUnavailable", {
  message: Schema.String,
  retryAfterMs: Schema.Int
}) {
  static readonly status = 503
}

/** The model call failed. */
export class ModelError extends Schema.TaggedError<ModelError>()("ModelError", {
  message: Schema.String,
  transient: Schema.Boolean
}) {}

/** The model refused the prompt because the context is too long. */
export class ContextOverflow extends Schema.TaggedError<ContextOverflow>()("ContextOverflow", {
  message: Schema.String
}) {}

/** A file-system operation on a sessions directory failed. */
export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  path: Schema.String,
  message: Schema.String
}) {}
