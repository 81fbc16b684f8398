/**
 * `GET /healthz`: the one route that needs no token.
 */
import { HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { Schema } from "effect"

/** The health answer. */
export const Health = Schema.Struct({ ok: Schema.Literal(true) }).annotations({ identifier: "Health" })

/** The health group. */
export class HealthApi extends HttpApiGroup.make("health").add(
  HttpApiEndpoint.get("healthz", "/healthz").addSuccess(Health)
) {}
