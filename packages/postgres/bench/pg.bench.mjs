// The PostgreSQL session store (packages/postgres): how long a flush takes when N sessions
// changed since the last one — one merge statement per changed key, in one transaction —
// on the machine's PostgreSQL (127.0.0.1:5432, or CONVERGE_TEST_DATABASE_URL's server), in
// a database created for the run and dropped after. Runs against the built package.
import { performance } from "node:perf_hooks"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Effect, Layer, Redacted } from "effect"
import { SessionStore } from "@converge/store"
import { Database, layerPgStore } from "../dist/index.js"

const SIZES = (process.env.BENCH_SIZES ?? "100,1000").split(",").map(Number)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const server = process.env.CONVERGE_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"
const name = `converge_bench_${process.pid}`
const url = Object.assign(new URL(server), { pathname: `/${name}` }).toString()

const admin = (sql) =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (c) => c.unsafe(sql)).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(server), maxConnections: 1 }))
    )
  )

const entry = (i, round) => ({
  sessionId: `${i.toString(16).padStart(8, "0")}-0b1d-4c3e-9a51-2f7d8e9c0a11`,
  generation: 1,
  updatedAt: 1_790_845_585_000 + round,
  compactionCount: round,
  totalTokens: 7500 + round,
  tokensAsOfSeq: round * 2,
  lastRun: { runId: `run_${round}`, outcome: "completed", at: 1_790_845_585_000 + round, seq: round * 2 },
  model: "claude-sonnet-4-5",
  deliveryContext: { channel: "telegram", to: `user:${i}` }
})

const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]

await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
await admin(`CREATE DATABASE ${name}`)
const rows = []
try {
  const layer = layerPgStore({ url, flushIntervalMs: 1_000_000 }).pipe(
    Layer.provideMerge(Database.layer({ url }))
  )
  await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const store = yield* SessionStore
        for (const n of SIZES) {
          const times = []
          for (let round = 1; round <= ROUNDS; round++) {
            for (let i = 0; i < n; i++) yield* store.merge(`agent:main:bench:${n}:${i}`, entry(i, round))
            const t0 = performance.now()
            yield* store.flush
            times.push(performance.now() - t0)
          }
          // The first round inserts; the later ones merge into existing rows.
          const merges = times.slice(1)
          const p50 = quantile(merges, 0.5)
          rows.push({
            "changed sessions": n,
            "insert flush (ms)": times[0].toFixed(1),
            "merge flush p50 (ms)": p50.toFixed(1),
            "merge flush max (ms)": Math.max(...merges).toFixed(1),
            "µs per statement": ((p50 * 1000) / n).toFixed(0),
            "rows merged/s": Math.round((n * 1000) / p50).toLocaleString("en-US")
          })
        }
      }).pipe(Effect.provide(layer))
    )
  )
} finally {
  await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
}
console.log(
  "PostgreSQL session store: one flush of N changed sessions (one merge statement each, one transaction)"
)
console.table(rows)
