/**
 * Spans and metrics of the runner, with an in-memory span exporter behind the real
 * OpenTelemetry SDK, on the scenarios of SCENARIOS.md under TestClock.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import { Metrics } from "@converge/domain"
import { scenarios } from "./scenarios.js"

const S1 = "S1 a turn times out at 60 s while its compaction runs on; at 90 s the count and snapshot converge"
const S6 = "S6 /compact during a turn and during an auto-compaction joins the running one"

/** Keeps its spans when the SDK shuts down with the layer (the base class forgets them). */
class KeepingExporter extends InMemorySpanExporter {
  override shutdown() {
    return Promise.resolve()
  }
}

/** Runs `effect` with every span it ends exported to memory; answers the spans. */
const traced = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const exporter = new KeepingExporter()
    const sdk = NodeSdk.layer(() => ({
      resource: { serviceName: "converge-test" },
      spanProcessor: new SimpleSpanProcessor(exporter)
    }))
    yield* effect.pipe(Effect.provide(sdk))
    return exporter.getFinishedSpans()
  })

const named = (spans: ReadonlyArray<ReadableSpan>, name: string) => spans.filter((s) => s.name === name)
const ms = (time: readonly [number, number]) => time[0] * 1000 + time[1] / 1e6
const lateCount = Metric.value(Metrics.lateCompletions).pipe(Effect.map((s) => s.count))

describe("telemetry", () => {
  it.scoped("S1: the timed-out turn's span ends before the compaction span it is linked from", () =>
    Effect.gen(function* () {
      const lateBefore = yield* lateCount
      const spans = yield* traced(scenarios[S1]!({}))
      const compactions = named(spans, "converge.compaction")
      expect(compactions).toHaveLength(1)
      const compaction = compactions[0]!
      const timedOut = named(spans, "converge.turn").filter((s) => s.attributes.outcome === "timed_out")
      expect(timedOut).toHaveLength(1)
      const turn = timedOut[0]!
      expect(turn.attributes.timeout).toBe("turn")
      expect(turn.attributes["session.key"]).toBe("agent:main:telegram:dm:1")
      expect(turn.attributes["compaction.id"]).toBe(compaction.attributes["compaction.id"])
      expect(typeof turn.attributes["run.id"]).toBe("string")
      expect(typeof turn.attributes["session.id"]).toBe("string")
      // Linked, not a child: the compaction outlives the turn.
      expect(compaction.parentSpanContext).toBeUndefined()
      expect(compaction.links.map((l) => l.context.spanId)).toEqual([turn.spanContext().spanId])
      expect(ms(turn.endTime) - ms(turn.startTime)).toBe(60_000)
      expect(ms(turn.endTime)).toBeLessThan(ms(compaction.endTime))
      expect(ms(compaction.endTime) - ms(compaction.startTime)).toBe(90_000)
      expect(compaction.attributes.outcome).toBe("completed")
      expect(compaction.attributes["compaction.reason"]).toBe("threshold")
      // The turn's own steps are its children.
      const children = spans.filter((s) => s.parentSpanContext?.spanId === turn.spanContext().spanId)
      const names = new Set(children.map((s) => s.name))
      for (const name of ["converge.turn.lane_wait", "converge.transcript.append", "converge.turn.context"]) {
        expect(names).toContain(name)
      }
      expect(named(spans, "converge.turn.compaction_wait").length).toBeGreaterThan(0)
      expect(named(spans, "converge.model.call").some((s) => s.attributes.purpose === "summary")).toBe(true)
      expect((yield* lateCount) - lateBefore).toBe(1)
    })
  )

  it.scoped("S6: a joined /compact adds a link to the running compaction, not a second span", () =>
    Effect.gen(function* () {
      const lateBefore = yield* lateCount
      const spans = yield* traced(scenarios[S6]!({}))
      const compactions = named(spans, "converge.compaction")
      expect(compactions).toHaveLength(1)
      const links = new Set(compactions[0]!.links.map((l) => l.context.spanId))
      const starter = named(spans, "converge.turn").find(
        (s) => s.attributes["compaction.id"] === compactions[0]!.attributes["compaction.id"]
      )
      expect(starter).toBeDefined()
      expect(links.has(starter!.spanContext().spanId)).toBe(true)
      const compacts = named(spans, "converge.compact")
      expect(compacts).toHaveLength(2)
      for (const c of compacts) expect(links.has(c.spanContext().spanId)).toBe(true)
      expect(links.size).toBe(3)
      // Everyone waited to the end: nothing was late.
      expect((yield* lateCount) - lateBefore).toBe(0)
    })
  )
})
