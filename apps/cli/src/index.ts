/**
 * @converge/cli: the `converge` command — offline `status` and `sessions`, `compact`,
 * `repair` of an OpenClaw sessions directory, the real-time `demo` and `gateway`.
 */
export * from "./Cli.js"
export * from "./CliError.js"
export * from "./Compact.js"
export * from "./Demo.js"
export * from "./Gateway.js"
export * from "./Offline.js"
export * from "./Render.js"
export * from "./Repair.js"
export * from "./SessionsDir.js"
export * as Progress from "./Progress.js"
