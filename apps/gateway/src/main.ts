/**
 * The gateway process: `node apps/gateway/dist/main.js` (what `npm start` runs).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import { GatewayLive } from "./Http.js"

GatewayLive.pipe(
  Layer.launch,
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)
