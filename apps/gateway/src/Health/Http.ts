/**
 * Handler of `GET /healthz`.
 */
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { GatewayApi } from "../Api.js"

/** The health group. */
export const HealthLive = HttpApiBuilder.group(GatewayApi, "health", (handlers) =>
  handlers.handle("healthz", () => Effect.succeed({ ok: true as const }))
)
