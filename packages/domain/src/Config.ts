/**
 * Configuration: the bounds of DESIGN §6 and the gateway's settings, with their defaults.
 * Read from the environment (`CONVERGE_*`) or from facade options; a bad value is a
 * `ConfigError` naming the variable and the value.
 */
import { Effect, Either, Schema } from "effect"
import { ConfigError } from "./Errors.js"

export const ModelKind = Schema.Literal("local", "openai", "anthropic")
export type ModelKind = typeof ModelKind.Type

const Millis = Schema.Int.pipe(Schema.between(0, 2_147_483_647))
const Positive = (max: number) => Schema.Int.pipe(Schema.between(1, max))

const NonEmpty = Schema.String.pipe(Schema.minLength(1))

/** The URL with its password replaced by `***`, for messages and logs. */
export const maskUrl = (url: string): string => {
  try {
    const u = new URL(url)
    if (u.password !== "") u.password = "***"
    return u.toString()
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, "//$1:***@")
  }
}

const isPostgresUrl = (s: string): boolean => {
  try {
    const u = new URL(s)
    return (u.protocol === "postgres:" || u.protocol === "postgresql:") && u.hostname !== ""
  } catch {
    return false
  }
}

/** The schema of each setting's value. */
const values = {
  sessionsDir: NonEmpty,
  host: NonEmpty,
  port: Schema.Int.pipe(Schema.between(0, 65_535)),
  token: NonEmpty,
  model: ModelKind,
  modelName: NonEmpty,
  localReplyMs: Millis,
  localSummaryMs: Millis,
  turnTimeoutMs: Positive(2_147_483_647),
  compactionWaitMs: Millis,
  compactionTimeoutMs: Positive(2_147_483_647),
  drainTimeoutMs: Millis,
  flushIntervalMs: Millis,
  laneQueue: Positive(1_000_000),
  contextWindow: Positive(100_000_000),
  reserveTokens: Schema.Int.pipe(Schema.between(0, 100_000_000)),
  keepRecentTokens: Schema.Int.pipe(Schema.between(0, 100_000_000)),
  eventBufferSize: Positive(1_000_000),
  leaseMs: Positive(2_147_483_647),
  cacheSessions: Schema.Int.pipe(Schema.between(0, 10_000_000)),
  cacheMb: Schema.Int.pipe(Schema.between(0, 1_000_000)),
  idempotencyKeys: Positive(100_000_000),
  admissionMs: Millis,
  maxTurns: Positive(100_000_000),
  databaseUrl: NonEmpty.pipe(Schema.filter(isPostgresUrl)),
  runnerAddress: NonEmpty.pipe(Schema.filter((s) => parseHostPort(s) !== undefined)),
  shardLockMs: Positive(2_147_483_647)
}

/** The decoded configuration. */
export const Config = Schema.Struct({
  ...values,
  token: Schema.optional(values.token),
  modelName: Schema.optional(values.modelName),
  databaseUrl: Schema.optional(values.databaseUrl),
  runnerAddress: Schema.optional(values.runnerAddress)
})
export type Config = typeof Config.Type

/** The defaults of DESIGN §6 and §7; `npm start` needs nothing else. */
export const defaults: Config = {
  sessionsDir: "./.converge/sessions",
  host: "127.0.0.1",
  port: 18_790,
  model: "local",
  localReplyMs: 20,
  localSummaryMs: 200,
  turnTimeoutMs: 600_000,
  compactionWaitMs: 60_000,
  compactionTimeoutMs: 900_000,
  drainTimeoutMs: 10_000,
  flushIntervalMs: 50,
  laneQueue: 64,
  contextWindow: 200_000,
  reserveTokens: 16_384,
  keepRecentTokens: 20_000,
  eventBufferSize: 1024,
  leaseMs: 10_000,
  cacheSessions: 1000,
  cacheMb: 16,
  idempotencyKeys: 10_000,
  admissionMs: 1000,
  maxTurns: 10_000,
  shardLockMs: 10_000
}

type Key = keyof Config

/** The environment variable of each setting. */
export const envVariables: { readonly [K in Key]: string } = {
  sessionsDir: "CONVERGE_SESSIONS_DIR",
  host: "CONVERGE_HOST",
  port: "CONVERGE_PORT",
  token: "CONVERGE_TOKEN",
  model: "CONVERGE_MODEL",
  modelName: "CONVERGE_MODEL_NAME",
  localReplyMs: "CONVERGE_LOCAL_REPLY_MS",
  localSummaryMs: "CONVERGE_LOCAL_SUMMARY_MS",
  turnTimeoutMs: "CONVERGE_TURN_TIMEOUT_MS",
  compactionWaitMs: "CONVERGE_COMPACTION_WAIT_MS",
  compactionTimeoutMs: "CONVERGE_COMPACTION_TIMEOUT_MS",
  drainTimeoutMs: "CONVERGE_DRAIN_TIMEOUT_MS",
  flushIntervalMs: "CONVERGE_FLUSH_INTERVAL_MS",
  laneQueue: "CONVERGE_LANE_QUEUE",
  contextWindow: "CONVERGE_CONTEXT_WINDOW",
  reserveTokens: "CONVERGE_RESERVE_TOKENS",
  keepRecentTokens: "CONVERGE_KEEP_RECENT_TOKENS",
  eventBufferSize: "CONVERGE_EVENT_BUFFER_SIZE",
  leaseMs: "CONVERGE_LEASE_MS",
  cacheSessions: "CONVERGE_CACHE_SESSIONS",
  cacheMb: "CONVERGE_CACHE_MB",
  idempotencyKeys: "CONVERGE_IDEMPOTENCY_KEYS",
  admissionMs: "CONVERGE_ADMISSION_MS",
  maxTurns: "CONVERGE_MAX_TURNS",
  databaseUrl: "CONVERGE_DATABASE_URL",
  runnerAddress: "CONVERGE_RUNNER_ADDRESS",
  shardLockMs: "CONVERGE_SHARD_LOCK_MS"
}

const numericKeys = new Set<Key>(
  (Object.keys(defaults) as Array<Key>).filter((k) => typeof defaults[k] === "number")
)

const atLeastOne = new Set<Key>([
  "turnTimeoutMs",
  "compactionTimeoutMs",
  "laneQueue",
  "contextWindow",
  "eventBufferSize",
  "leaseMs",
  "idempotencyKeys",
  "maxTurns",
  "shardLockMs"
])

const describe = (key: Key): string => {
  if (key === "model") return `one of "local", "openai", "anthropic"`
  if (key === "port") return "an integer from 0 to 65535"
  if (key === "databaseUrl") return "a postgres://user:password@host:port/database URL"
  if (key === "runnerAddress") return "host:port, a port from 1 to 65535 ([::1]:port for IPv6)"
  if (numericKeys.has(key)) return `an integer of at least ${atLeastOne.has(key) ? 1 : 0}`
  return "a non-empty string"
}

const decodeOne = (key: Key, raw: unknown, name: string): Either.Either<unknown, ConfigError> => {
  let value: unknown = raw
  if (numericKeys.has(key) && typeof raw === "string") {
    const trimmed = raw.trim()
    value = /^-?\d+$/.test(trimmed) ? Number(trimmed) : Number.NaN
  }
  const schema = values[key] as Schema.Schema<unknown, unknown, never>
  // A database URL may carry a password: messages show it masked.
  const shown = key === "databaseUrl" ? maskUrl(String(raw)) : String(raw)
  return Schema.decodeUnknownEither(schema)(value).pipe(
    Either.mapLeft(
      () =>
        new ConfigError({
          variable: name,
          value: shown,
          message: `${name}=${JSON.stringify(shown)} is not valid: expected ${describe(key)}`
        })
    )
  )
}

/** Builds a `Config` from options (facade, tests); unknown or bad options fail with `ConfigError`. */
export const makeConfig = (options: Partial<Record<Key, unknown>> = {}): Effect.Effect<Config, ConfigError> =>
  Effect.suspend(() => {
    const out: Record<string, unknown> = { ...defaults }
    for (const [k, v] of Object.entries(options)) {
      if (v === undefined) continue
      if (!(k in envVariables)) {
        return Effect.fail(
          new ConfigError({
            variable: k,
            value: String(v),
            message: `unknown configuration option ${JSON.stringify(k)}`
          })
        )
      }
      const decoded = decodeOne(k as Key, v, k)
      if (Either.isLeft(decoded)) return Effect.fail(decoded.left)
      out[k] = decoded.right
    }
    return Effect.succeed(out as Config)
  })

/** Reads the `CONVERGE_*` variables of an environment; unset or empty variables take the defaults. */
export const configFromEnv = (env: Record<string, string | undefined>): Effect.Effect<Config, ConfigError> =>
  Effect.suspend(() => {
    const out: Record<string, unknown> = { ...defaults }
    for (const key of Object.keys(envVariables) as Array<Key>) {
      const name = envVariables[key]
      const raw = env[name]
      if (raw === undefined || raw === "") continue
      const decoded = decodeOne(key, raw, name)
      if (Either.isLeft(decoded)) return Effect.fail(decoded.left)
      out[key] = decoded.right
    }
    return Effect.succeed(out as Config)
  })

/** `host:port` (`[v6]:port`) with a port from 1 to 65535, or undefined. */
export const parseHostPort = (s: string): { readonly host: string; readonly port: number } | undefined => {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]\s]+):(\d{1,5})$/.exec(s)
  if (m === null) return undefined
  const port = Number(m[2])
  if (port < 1 || port > 65_535) return undefined
  const host = m[1]!.startsWith("[") ? m[1]!.slice(1, -1) : m[1]!
  return { host, port }
}

/** True for addresses that stay on this machine. */
export const isLoopbackHost = (host: string): boolean =>
  host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
