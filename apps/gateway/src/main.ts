/**
 * The gateway process: `node apps/gateway/dist/main.js` (what `npm start` runs). Its fibers run
 * on the sliced scheduler, so that under load the event loop still turns every couple of ms
 * (a new request is refused at once, a deadline fires on time: docs/admission.md).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { Scheduling } from "@converge/runtime"
import { GatewayLive } from "./Http.js"

GatewayLive.pipe(
  Layer.launch,
  Effect.withScheduler(new Scheduling.SlicedScheduler()),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)
