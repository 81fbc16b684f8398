/**
 * Handlers of `GET /metrics` and `GET /`.
 */
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { Telemetry } from "@converge/runtime"
import { GatewayApi } from "../Api.js"
import { page } from "./page.js"

/** The observability group. */
export const ObserveLive = HttpApiBuilder.group(GatewayApi, "observe", (handlers) =>
  Effect.gen(function* () {
    const prometheus = yield* Telemetry.Prometheus
    return handlers.handle("metrics", () => prometheus.scrape).handle("page", () => Effect.succeed(page))
  })
)
