/**
 * Telemetry of a runtime: traces by OTLP when the standard `OTEL_*` variables ask for them
 * (off otherwise: Effect's own spans only), and the Effect metrics of `Metrics` read through
 * OpenTelemetry's metrics SDK and rendered as Prometheus text for `GET /metrics`.
 */
import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import * as OtelResource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer } from "effect"
import { Metrics } from "@converge/domain"

/** The service name spans and metrics carry when `OTEL_SERVICE_NAME` is not set. */
export const defaultServiceName = "converge-gateway"

/** What the environment asks of telemetry. */
export interface TelemetrySettings {
  /** `OTEL_SERVICE_NAME`, or `converge-gateway`. */
  readonly serviceName: string
  /** Where traces go by OTLP/HTTP, or `undefined` when tracing is off. */
  readonly tracesEndpoint: string | undefined
}

/**
 * Reads the standard variables: traces are exported when `OTEL_EXPORTER_OTLP_ENDPOINT` or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, unless `OTEL_SDK_DISABLED=true` or
 * `OTEL_TRACES_EXPORTER=none`. The exporter itself reads the rest (`OTEL_EXPORTER_OTLP_HEADERS`, …).
 */
export const settingsFromEnv = (env: Record<string, string | undefined>): TelemetrySettings => {
  const nonEmpty = (name: string) => {
    const value = env[name]?.trim()
    return value === undefined || value === "" ? undefined : value
  }
  const disabled =
    nonEmpty("OTEL_SDK_DISABLED")?.toLowerCase() === "true" ||
    nonEmpty("OTEL_TRACES_EXPORTER")?.toLowerCase() === "none"
  const endpoint = nonEmpty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") ?? nonEmpty("OTEL_EXPORTER_OTLP_ENDPOINT")
  return {
    serviceName: nonEmpty("OTEL_SERVICE_NAME") ?? defaultServiceName,
    tracesEndpoint: disabled ? undefined : endpoint
  }
}

/**
 * The OpenTelemetry resource, and the OTLP tracer when `settings` has an endpoint. Without one
 * spans are switched off (`Layer.setTracerEnabled(false)`): each `withSpan` is then a no-op
 * span, so a gateway that exports no traces pays next to nothing for them.
 */
export const tracingLayer = (settings: TelemetrySettings): Layer.Layer<OtelResource.Resource> =>
  settings.tracesEndpoint === undefined
    ? Layer.merge(OtelResource.layer({ serviceName: settings.serviceName }), Layer.setTracerEnabled(false))
    : NodeSdk.layer(() => ({
        resource: { serviceName: settings.serviceName },
        // The exporter reads the endpoint, headers and timeouts from the `OTEL_*` variables.
        spanProcessor: new BatchSpanProcessor(new OTLPTraceExporter())
      }))

/** Every metric of the runtime, as Prometheus text exposition format 0.0.4. */
export class Prometheus extends Effect.Service<Prometheus>()("converge/Prometheus", {
  scoped: Effect.gen(function* () {
    // No server of its own: the gateway serves the text at `GET /metrics`, behind its token.
    const exporter = new PrometheusExporter({ preventServerStart: true })
    const serializer = new PrometheusSerializer()
    const producer = yield* OtelMetrics.makeProducer
    yield* OtelMetrics.registerProducer(producer, () => exporter)
    yield* Metrics.registerAll
    /** One scrape: reads every metric now. */
    const scrape = Effect.promise(() => exporter.collect()).pipe(
      Effect.map(({ resourceMetrics }) => serializer.serialize(resourceMetrics))
    )
    return { scrape } as const
  })
}) {}

/** The content type of a scrape. */
export const prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

/** Tracing as `env` asks, and the Prometheus view of the metrics. */
export const layer = (env: Record<string, string | undefined> = process.env) => {
  const settings = settingsFromEnv(env)
  return Prometheus.Default.pipe(Layer.provideMerge(tracingLayer(settings)))
}
