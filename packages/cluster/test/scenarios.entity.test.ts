/**
 * SCENARIOS.md through the `Session` entity: the runner's scenario functions unchanged, with
 * the runner's session operations (turn, compact, cancel, status, reset) sent as messages to
 * the key's entity — built by `layerSessionEntity` on the real `Runner` — through the cluster's
 * in-memory test client (`Entity.makeTestClient`), by the router the gateway uses
 * (`viaEntity`). Each answer crosses the RPC's schemas (encoded, then decoded) as it would
 * between processes. Under `TestClock`, with the exact times of the other scenario runs: the
 * test client adds no poll or retry delay (the sharding's own timers do, so a `TestRunner`
 * would shift every virtual time by its polls).
 */
import { Entity, ShardingConfig } from "@effect/cluster"
import type { Rpc } from "@effect/rpc"
import { describe, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { Runner } from "@converge/runner"
import type { SessionStore } from "@converge/store"
import type { Transcript } from "@converge/transcript"
import { scenarios } from "../../runner/test/scenarios.js"
import { layerSessionEntity } from "../src/ClusterLayer.js"
import { SessionEntity } from "../src/SessionEntity.js"
import { type EntityClient, viaEntity } from "../src/SessionRouter.js"

/** `effect`'s success or failure, encoded by the schemas of `rpc` and decoded again. */
const overTheWire = <A, E>(rpc: Rpc.AnyWithProps, effect: Effect.Effect<A, E>): Effect.Effect<A, E> => {
  const success = rpc.successSchema as Schema.Schema<A, unknown>
  const failure = rpc.errorSchema as Schema.Schema<E, unknown>
  const roundTrip = <T>(schema: Schema.Schema<T, unknown>, value: T) =>
    Effect.orDie(Effect.flatMap(Schema.encode(schema)(value), Schema.decodeUnknown(schema)))
  return effect.pipe(
    Effect.flatMap((a) => roundTrip(success, a)),
    Effect.catchAll((e) => Effect.flatMap(roundTrip(failure, e as E), Effect.fail))
  )
}

/** A `Runner` whose session operations go through the entity; the rest is the real runner's. */
const throughEntity = <E, R>(
  real: Layer.Layer<Runner, E, R>
): Layer.Layer<Runner, E, R | SessionStore | Transcript> =>
  Layer.scoped(
    Runner,
    Effect.gen(function* () {
      const runner = yield* Runner
      const makeClient = yield* Entity.makeTestClient(
        SessionEntity,
        layerSessionEntity().pipe(Layer.provide(Layer.succeed(Runner, runner)))
      )
      const rpcs = SessionEntity.protocol.requests
      const clientOf = (key: string) =>
        Effect.map(makeClient(key), (client) => {
          const wired = {} as Record<string, (...args: Array<unknown>) => Effect.Effect<unknown, unknown>>
          for (const [tag, rpc] of rpcs) {
            const call = (client as unknown as typeof wired)[tag]!
            wired[tag] = (...args) => overTheWire(rpc, call(...args))
          }
          return wired as unknown as EntityClient
        })
      const router = viaEntity(clientOf)
      return Runner.make({
        ...runner,
        turn: router.turn,
        // The router may also answer StorageUnavailable (a message not delivered): not in memory.
        compact: router.compact as typeof runner.compact,
        cancelCompaction: router.cancelCompaction as typeof runner.cancelCompaction,
        status: router.status as typeof runner.status,
        reset: router.reset as typeof runner.reset
      })
    })
  ).pipe(Layer.provide(ShardingConfig.layer()), Layer.provideMerge(real))

describe("scenarios through the Session entity", () => {
  for (const [name, scenario] of Object.entries(scenarios)) {
    it.scoped(name, () => scenario({ variant: { name: "entity", runner: throughEntity } }), 30_000)
  }
})
