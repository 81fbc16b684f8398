/**
 * `GET /metrics` (Prometheus text, behind the token) and `GET /` (the live sessions page,
 * which needs no token itself: it asks for one and sends it with its API calls).
 */
import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { Telemetry } from "@converge/runtime"

/** Prometheus text exposition format 0.0.4. */
export const MetricsText = Schema.String.pipe(
  HttpApiSchema.withEncoding({ kind: "Text", contentType: Telemetry.prometheusContentType })
).annotations({ identifier: "MetricsText", description: "Every Converge metric, as Prometheus text" })

/** The sessions page. */
export const PageHtml = Schema.String.pipe(
  HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/html; charset=utf-8" })
).annotations({ identifier: "PageHtml", description: "The live sessions page" })

/** The observability group. */
export class ObserveApi extends HttpApiGroup.make("observe")
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(MetricsText)
      .annotate(OpenApi.Summary, "Metrics in Prometheus text format")
  )
  .add(
    HttpApiEndpoint.get("page", "/")
      .addSuccess(PageHtml)
      .annotate(OpenApi.Summary, "The live sessions page (asks for the token itself)")
  ) {}
