export * from "./createRuntime.js"
export * from "./ModelLayer.js"
export * from "./RuntimeLayer.js"
export * as Telemetry from "./Telemetry.js"
