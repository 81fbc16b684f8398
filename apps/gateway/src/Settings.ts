/**
 * The gateway's settings: the domain `Config` (decoded from `CONVERGE_*`), checked for
 * what only the gateway cares about (a token off loopback), plus its HTTP limits.
 */
import { Context, Effect } from "effect"
import { type Config, ConfigError, configFromEnv, envVariables, isLoopbackHost } from "@converge/domain"

/** What the HTTP layer reads. */
export interface GatewaySettings {
  readonly config: Config
  /** Request bodies over this many bytes get 413. */
  readonly maxBodyBytes: number
  /** How often an idle event stream gets a `: keep-alive` comment. */
  readonly keepAliveMs: number
  /** How long, after the runtime closed, in-flight responses get before connections are closed. */
  readonly closeGraceMs: number
}

/** 1 MiB. */
export const MAX_BODY_BYTES = 1024 * 1024

/** The settings of the running gateway. */
export class Settings extends Context.Tag("converge/gateway/Settings")<Settings, GatewaySettings>() {}

/** Refuses a non-loopback host without a token; otherwise builds the settings. */
export const make = (
  config: Config,
  overrides: Partial<Omit<GatewaySettings, "config">> = {}
): Effect.Effect<GatewaySettings, ConfigError> =>
  !isLoopbackHost(config.host) && config.token === undefined
    ? Effect.fail(
        new ConfigError({
          variable: envVariables.token,
          value: "",
          message:
            `${envVariables.host}=${JSON.stringify(config.host)} is not a loopback address: ` +
            `the gateway refuses to start without ${envVariables.token}`
        })
      )
    : Effect.succeed({
        config,
        maxBodyBytes: overrides.maxBodyBytes ?? MAX_BODY_BYTES,
        keepAliveMs: overrides.keepAliveMs ?? 15_000,
        closeGraceMs: overrides.closeGraceMs ?? 1_000
      })

/** The settings of an environment (`CONVERGE_*`); a bad value fails naming the variable and the value. */
export const fromEnv = (
  env: Record<string, string | undefined>
): Effect.Effect<GatewaySettings, ConfigError> => Effect.flatMap(configFromEnv(env), (config) => make(config))
