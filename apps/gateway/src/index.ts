/**
 * @converge/gateway: the HTTP + SSE gateway embedding the Converge runtime (DESIGN §7).
 */
export * from "./Api.js"
export * as EmbeddedRuntime from "./EmbeddedRuntime.js"
export * from "./Errors.js"
export * from "./Events/Api.js"
export * from "./Health/Api.js"
export * from "./Http.js"
export * as Logging from "./Logging.js"
export * from "./Sessions/Api.js"
export * as Settings from "./Settings.js"
export * from "./Shutdown.js"
