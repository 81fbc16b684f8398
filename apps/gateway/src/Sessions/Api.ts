/**
 * The sessions routes of DESIGN §7: turns, compaction, cancellation, status, list, reset.
 */
import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import {
  CompactRequest,
  CompactResult,
  InvalidSessionKey,
  LaneFull,
  Overloaded,
  SessionKey,
  SessionLeased,
  SessionNotFound,
  SessionStatus,
  SessionUnavailable,
  StorageUnavailable,
  TurnRequest,
  TurnResult
} from "@converge/domain"

/** The `{key}` path parameter: 1–256 characters of `A-Z a-z 0-9 : _ . @ + -`. */
const key = HttpApiSchema.param("key", SessionKey)

/** An `Idempotency-Key` header value: 1–256 printable ASCII characters. */
export const IdempotencyKey = Schema.String.pipe(
  Schema.filter(
    (s) => {
      if (s.length === 0) return "Idempotency-Key must not be empty"
      if (s.length > 256) return `Idempotency-Key is ${s.length} characters long; at most 256 are allowed`
      if (!/^[\x21-\x7e]+$/.test(s)) return "Idempotency-Key may only contain printable ASCII characters"
      return true
    },
    { identifier: "IdempotencyKey" }
  )
)

/** Headers of a turn. */
export const TurnHeaders = Schema.Struct({ "idempotency-key": Schema.optional(IdempotencyKey) })

/** Body of a compaction request; an empty body means `{}`. */
export const CompactBody = Schema.NullOr(CompactRequest)

/** Answer of `GET /v1/sessions`. */
export const SessionList = Schema.Struct({ sessions: Schema.Array(SessionStatus) }).annotations({
  identifier: "SessionList"
})

/** The sessions group, under `/v1`. */
export class SessionsApi extends HttpApiGroup.make("sessions")
  .add(
    HttpApiEndpoint.post("turn")`/sessions/${key}/turns`
      .setPayload(TurnRequest)
      .setHeaders(TurnHeaders)
      .addSuccess(TurnResult)
      .addError(InvalidSessionKey, { status: InvalidSessionKey.status })
      .addError(LaneFull, { status: LaneFull.status })
      .addError(Overloaded, { status: Overloaded.status })
      .addError(SessionLeased, { status: SessionLeased.status })
      .addError(SessionUnavailable, { status: SessionUnavailable.status })
      .addError(StorageUnavailable, { status: StorageUnavailable.status })
  )
  .add(
    HttpApiEndpoint.post("compact")`/sessions/${key}/compact`
      .setPayload(CompactBody)
      .addSuccess(CompactResult)
      .addError(SessionNotFound, { status: SessionNotFound.status })
      .addError(SessionUnavailable, { status: SessionUnavailable.status })
      .addError(StorageUnavailable, { status: StorageUnavailable.status })
  )
  .add(
    HttpApiEndpoint.del("cancelCompaction")`/sessions/${key}/compaction`
      .addSuccess(SessionStatus)
      .addError(SessionNotFound, { status: SessionNotFound.status })
      .addError(SessionUnavailable, { status: SessionUnavailable.status })
      .addError(StorageUnavailable, { status: StorageUnavailable.status })
  )
  .add(
    HttpApiEndpoint.get("status")`/sessions/${key}/status`
      .addSuccess(SessionStatus)
      .addError(SessionNotFound, { status: SessionNotFound.status })
      .addError(SessionUnavailable, { status: SessionUnavailable.status })
      .addError(StorageUnavailable, { status: StorageUnavailable.status })
  )
  .add(HttpApiEndpoint.get("list", "/sessions").addSuccess(SessionList))
  .add(
    HttpApiEndpoint.post("reset")`/sessions/${key}/reset`
      .addSuccess(SessionStatus)
      .addError(SessionNotFound, { status: SessionNotFound.status })
      .addError(SessionUnavailable, { status: SessionUnavailable.status })
      .addError(StorageUnavailable, { status: StorageUnavailable.status })
  )
  .prefix("/v1") {}
