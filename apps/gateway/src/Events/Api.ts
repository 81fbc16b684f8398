/**
 * `GET /v1/events`: lifecycle events as server-sent events, optionally for one session.
 */
import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { SessionKey } from "@converge/domain"

/** `?session=<key>` keeps only that session's events (and `Resync`). */
export const EventsQuery = Schema.Struct({ session: Schema.optional(SessionKey) })

/** The body: `id`, `event: <_tag>`, `data: <json>` blocks, and `: keep-alive` comments. */
export const EventStream = Schema.String.pipe(
  HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/event-stream" })
).annotations({
  identifier: "EventStream",
  description: "Server-sent events: `id`, `event: <_tag>`, `data: <LifecycleEvent as JSON>`"
})

/** The events group. */
export class EventsApi extends HttpApiGroup.make("events")
  .add(HttpApiEndpoint.get("events", "/events").setUrlParams(EventsQuery).addSuccess(EventStream))
  .prefix("/v1") {}
