/**
 * The errors only the gateway answers with (the runtime's own live in `@converge/domain`).
 * Each is `{"_tag", "message"}` on the wire, with its HTTP status annotated for the API.
 */
import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/** Malformed JSON, or a path, query, header or body that fails its schema. (400) */
export class BadRequest extends Schema.TaggedError<BadRequest>()(
  "BadRequest",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 400, description: "The request failed its schema, or is not JSON" })
) {}

/** A token is configured and the request does not carry it as `Authorization: Bearer <token>`. (401) */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401, description: "Missing or wrong bearer token" })
) {}

/** No route matches the method and path. (404) */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()(
  "RouteNotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404, description: "No such route" })
) {}

/** The request body is larger than `maxBodyBytes` (1 MiB). (413) */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()(
  "PayloadTooLarge",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 413, description: "The request body is over 1 MiB" })
) {}
