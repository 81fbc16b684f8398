/**
 * Per-session FIFO serialization of turns. Each session key has a lane: one turn runs,
 * up to `laneQueue` wait in arrival order, and the next is refused with `LaneFull`.
 * A lane is released on every outcome, interruption included.
 */
import { Deferred, Effect, Exit, FiberId } from "effect"
import { LaneFull, Metrics, Tracing } from "@converge/domain"
import { RunnerConfig } from "./RunnerConfig.js"

interface Lane {
  running: boolean
  readonly waiting: Array<Deferred.Deferred<void>>
}

/** What a lane holds right now. */
export interface LaneState {
  readonly running: boolean
  readonly waiting: number
}

export class Lanes extends Effect.Service<Lanes>()("converge/Lanes", {
  effect: Effect.gen(function* () {
    const config = yield* RunnerConfig
    const lanes = new Map<string, Lane>()
    // Totals over all lanes, for the `converge_lane_waiting` and `converge_lanes_busy` gauges.
    let waiting = 0
    const gauges = () => {
      Metrics.laneWaiting.unsafeUpdate(waiting, [])
      Metrics.lanesBusy.unsafeUpdate(lanes.size, [])
    }

    // Hands the lane to the next waiter, or frees it.
    const release = (key: string) =>
      Effect.sync(() => {
        const lane = lanes.get(key)
        if (lane === undefined) return
        const next = lane.waiting.shift()
        if (next !== undefined) {
          waiting--
          Deferred.unsafeDone(next, Exit.void)
        } else {
          lane.running = false
          lanes.delete(key)
        }
        gauges()
      })

    /** Runs `effect` when it is this turn's place in the lane of `key`. */
    const withLane = <A, E, R>(
      key: string,
      effect: Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | LaneFull, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          let lane = lanes.get(key)
          if (lane === undefined) {
            lane = { running: false, waiting: [] }
            lanes.set(key, lane)
          }
          if (!lane.running) {
            lane.running = true
            gauges()
            return Effect.void
          }
          if (lane.waiting.length >= config.laneQueue) {
            return Effect.fail(
              new LaneFull({
                sessionKey: key,
                message: `session ${key} already has ${lane.waiting.length} turns waiting (laneQueue ${config.laneQueue})`
              })
            )
          }
          const turn = Deferred.unsafeMake<void>(FiberId.none)
          const queue = lane.waiting
          queue.push(turn)
          waiting++
          gauges()
          return restore(Deferred.await(turn)).pipe(
            Effect.onInterrupt(() =>
              Effect.flatMap(Deferred.isDone(turn), (handedOver) => {
                // Handed the lane just as we were interrupted: pass it on.
                if (handedOver) return release(key)
                const i = queue.indexOf(turn)
                if (i >= 0) {
                  queue.splice(i, 1)
                  waiting--
                  gauges()
                }
                return Effect.void
              })
            )
          )
        }).pipe(
          Tracing.withSpan("converge.turn.lane_wait", { attributes: { "session.key": key } }),
          Effect.zipRight(restore(effect).pipe(Effect.ensuring(release(key))))
        )
      )

    /** The state of the lane of `key`. */
    const state = (key: string): Effect.Effect<LaneState> =>
      Effect.sync(() => {
        const lane = lanes.get(key)
        return { running: lane?.running ?? false, waiting: lane?.waiting.length ?? 0 }
      })

    return { withLane, state } as const
  })
}) {}
