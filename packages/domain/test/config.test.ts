import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { ConfigError, configFromEnv, defaults, isLoopbackHost, makeConfig } from "../src/index.js"

const failure = (effect: Effect.Effect<unknown, ConfigError>): ConfigError => {
  const exit = Effect.runSyncExit(effect)
  if (Exit.isSuccess(exit)) throw new Error("expected a ConfigError")
  const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
  if (!(error instanceof ConfigError)) throw new Error("expected a ConfigError")
  return error
}

describe("Config", () => {
  it.effect("takes the defaults of the design with an empty environment", () =>
    Effect.gen(function* () {
      const config = yield* configFromEnv({})
      expect(config).toEqual(defaults)
      expect(config.turnTimeoutMs).toBe(600_000)
      expect(config.compactionWaitMs).toBe(60_000)
      expect(config.compactionTimeoutMs).toBe(900_000)
      expect(config.drainTimeoutMs).toBe(10_000)
      expect(config.flushIntervalMs).toBe(50)
      expect(config.laneQueue).toBe(64)
      expect(config.contextWindow).toBe(200_000)
      expect(config.reserveTokens).toBe(16_384)
      expect(config.keepRecentTokens).toBe(20_000)
      expect(config.sessionsDir).toBe("./.converge/sessions")
      expect(config.host).toBe("127.0.0.1")
      expect(config.port).toBe(18_790)
      expect(config.model).toBe("local")
      expect(config.cacheSessions).toBe(1000)
      expect(config.cacheMb).toBe(16)
      expect(config.idempotencyKeys).toBe(10_000)
    })
  )

  it.effect("reads every CONVERGE_* variable", () =>
    Effect.gen(function* () {
      const config = yield* configFromEnv({
        CONVERGE_PORT: "8080",
        CONVERGE_TURN_TIMEOUT_MS: "200",
        CONVERGE_MODEL: "openai",
        CONVERGE_MODEL_NAME: "gpt-x",
        CONVERGE_TOKEN: "secret",
        CONVERGE_LANE_QUEUE: "3"
      })
      expect(config.port).toBe(8080)
      expect(config.turnTimeoutMs).toBe(200)
      expect(config.model).toBe("openai")
      expect(config.modelName).toBe("gpt-x")
      expect(config.token).toBe("secret")
      expect(config.laneQueue).toBe(3)
    })
  )

  it("names the bad variable and its value", () => {
    const port = failure(configFromEnv({ CONVERGE_PORT: "abc" }))
    expect(port.variable).toBe("CONVERGE_PORT")
    expect(port.value).toBe("abc")
    expect(port.message).toBe(`CONVERGE_PORT="abc" is not valid: expected an integer from 0 to 65535`)

    expect(failure(configFromEnv({ CONVERGE_PORT: "70000" })).message).toContain(`CONVERGE_PORT="70000"`)
    expect(failure(configFromEnv({ CONVERGE_TURN_TIMEOUT_MS: "-5" })).message).toBe(
      `CONVERGE_TURN_TIMEOUT_MS="-5" is not valid: expected an integer of at least 1`
    )
    expect(failure(configFromEnv({ CONVERGE_FLUSH_INTERVAL_MS: "1.5" })).message).toContain(
      `CONVERGE_FLUSH_INTERVAL_MS="1.5"`
    )
    expect(failure(configFromEnv({ CONVERGE_MODEL: "gpt" })).message).toBe(
      `CONVERGE_MODEL="gpt" is not valid: expected one of "local", "openai", "anthropic"`
    )
  })

  it("reads CONVERGE_DATABASE_URL, and names a bad one with its password masked", () => {
    const ok = Effect.runSync(configFromEnv({ CONVERGE_DATABASE_URL: "postgres://u:pw@db:5432/converge" }))
    expect(ok.databaseUrl).toBe("postgres://u:pw@db:5432/converge")
    expect(Effect.runSync(configFromEnv({})).databaseUrl).toBeUndefined()
    const e = failure(configFromEnv({ CONVERGE_DATABASE_URL: "mysql://u:s3cret@db/x" }))
    expect(e.variable).toBe("CONVERGE_DATABASE_URL")
    expect(e.message).toContain("mysql://u:***@db/x")
    expect(e.message).toContain("postgres://")
    expect(`${e.message} ${e.value}`).not.toContain("s3cret")
  })

  it("reads the cache bounds, and names a bad one", () => {
    const config = Effect.runSync(
      configFromEnv({ CONVERGE_CACHE_SESSIONS: "0", CONVERGE_CACHE_MB: "24", CONVERGE_IDEMPOTENCY_KEYS: "5" })
    )
    expect([config.cacheSessions, config.cacheMb, config.idempotencyKeys]).toEqual([0, 24, 5])
    expect(failure(configFromEnv({ CONVERGE_CACHE_MB: "lots" })).message).toBe(
      `CONVERGE_CACHE_MB="lots" is not valid: expected an integer of at least 0`
    )
    expect(failure(configFromEnv({ CONVERGE_CACHE_SESSIONS: "-1" })).variable).toBe("CONVERGE_CACHE_SESSIONS")
    expect(failure(configFromEnv({ CONVERGE_IDEMPOTENCY_KEYS: "0" })).message).toBe(
      `CONVERGE_IDEMPOTENCY_KEYS="0" is not valid: expected an integer of at least 1`
    )
  })

  it("checks facade options the same way, by option name", () => {
    expect(failure(makeConfig({ laneQueue: 0 })).message).toBe(
      `laneQueue="0" is not valid: expected an integer of at least 1`
    )
    expect(failure(makeConfig({ sessionsDir: "" })).variable).toBe("sessionsDir")
    expect(failure(makeConfig({ turnTimeout: 5 } as never)).message).toContain(
      `unknown configuration option "turnTimeout"`
    )
    expect(Effect.runSync(makeConfig({ turnTimeoutMs: 1000 })).turnTimeoutMs).toBe(1000)
  })

  it("knows loopback hosts", () => {
    expect(isLoopbackHost("127.0.0.1")).toBe(true)
    expect(isLoopbackHost("localhost")).toBe(true)
    expect(isLoopbackHost("::1")).toBe(true)
    expect(isLoopbackHost("0.0.0.0")).toBe(false)
    expect(isLoopbackHost("192.168.1.4")).toBe(false)
  })
})
