// Gateways on PostgreSQL against the file backend, on this machine:
//  1. durable store merges/s at 1,000 sessions: the same SessionStore, write-behind, over the
//     file backend (sessions.json) and over PostgreSQL (one merge statement per changed key);
//  2. the merge statement's latency, one statement at a time, p50/p99;
//  3. turns/s over HTTP at 1,000 sessions with 1, 2 and 3 gateway processes on one database
//     (and one gateway on a sessions directory), each session routed to one gateway by its key
//     (what a load balancer in front of them does), the local model answering at once.
// The machine's PostgreSQL (127.0.0.1:5432, or CONVERGE_TEST_DATABASE_URL's server), in
// databases created for the run and dropped after. Runs against the built packages.
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { performance } from "node:perf_hooks"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { SessionStore } from "@converge/store"
import { Effect, Layer, Redacted } from "effect"
import {
  fmt,
  percentile,
  startGateway,
  stopGateway as stop,
  turnsPerSecond as measureTurns
} from "../../../scripts/bench/gateways.mjs"
import { Database, layerPgStore, mergeCallSql, toRow } from "../dist/index.js"

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 1000)
const STORE_SECONDS = Number(process.env.BENCH_STORE_SECONDS ?? 5)
const TURN_SECONDS = Number(process.env.BENCH_TURN_SECONDS ?? 8)
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 48)
const STATEMENTS = Number(process.env.BENCH_STATEMENTS ?? 2000)
const server = process.env.CONVERGE_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"
const dbUrl = (name) => Object.assign(new URL(server), { pathname: `/${name}` }).toString()

const admin = (sql) =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (c) => c.unsafe(sql)).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(server), maxConnections: 1 }))
    )
  )
const databases = []
const freshDatabase = async (tag) => {
  const name = `converge_bench_${tag}_${process.pid}`
  await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  await admin(`CREATE DATABASE ${name}`)
  databases.push(name)
  return dbUrl(name)
}
const tempDirs = []
const tempDir = () => {
  const dir = nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "converge-bench-"))
  tempDirs.push(dir)
  return dir
}

const keyOf = (i) => `agent:main:bench:${i}`
const sessionIdOf = (i) => `${i.toString(16).padStart(8, "0")}-0b1d-4c3e-9a51-2f7d8e9c0a11`

// ---- 1. durable merges/s -----------------------------------------------------------------

/** Merges as fast as one fiber issues them (raising compactionCount of a random session) for STORE_SECONDS; then waits until all are durable. */
const durableMerges = (layer) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const store = yield* SessionStore
        const counts = new Int32Array(SESSIONS)
        let issued = 0
        const start = performance.now()
        while (performance.now() - start < STORE_SECONDS * 1000) {
          for (let b = 0; b < 64; b++) {
            const i = Math.floor(Math.random() * SESSIONS)
            counts[i]++
            issued++
            yield* store.merge(keyOf(i), {
              sessionId: sessionIdOf(i),
              generation: 1,
              compactionCount: counts[i]
            })
          }
          yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        }
        for (;;) {
          const s = yield* store.stats
          if (s.durableMerges >= issued) break
          yield* Effect.sleep(1)
        }
        const elapsed = (performance.now() - start) / 1000
        const s = yield* store.stats
        return { perSecond: issued / elapsed, flushes: s.flushes, merges: issued }
      }).pipe(Effect.provide(layer))
    )
  )

const fileStore = (dir) =>
  SessionStore.layerFile({ sessionsDir: dir, flushIntervalMs: 50 }).pipe(
    Layer.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer))
  )
const pgStore = (url) =>
  layerPgStore({ url, flushIntervalMs: 50 }).pipe(Layer.provideMerge(Database.layer({ url })))

// ---- 2. the merge statement ----------------------------------------------------------------

const statementLatency = (url) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const times = []
        for (let n = 0; n < STATEMENTS; n++) {
          const i = n % SESSIONS
          const params = toRow(keyOf(i), {
            sessionId: sessionIdOf(i),
            generation: 1,
            compactionCount: n,
            updatedAt: n
          })
          const t0 = performance.now()
          yield* sql.unsafe(mergeCallSql, params)
          times.push(performance.now() - t0)
        }
        const sorted = Float64Array.from(times).sort()
        return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) }
      }).pipe(Effect.provide(Database.layer({ url, maxConnections: 1 })))
    )
  )

// ---- 3. turns/s over HTTP -------------------------------------------------------------------

/** Turns for random sessions, each sent to the gateway its key is routed to (`i mod n`). */
const turnsPerSecond = (gateways) =>
  measureTurns({
    sessions: SESSIONS,
    clients: CLIENTS,
    seconds: TURN_SECONDS,
    keyOf,
    route: (i) => gateways[i % gateways.length]
  })

const gatewayEnv = (extra) => ({
  CONVERGE_LOCAL_REPLY_MS: "0",
  CONVERGE_LOCAL_SUMMARY_MS: "0",
  CONVERGE_FLUSH_INTERVAL_MS: "50",
  CONVERGE_MAX_TURNS: "100000",
  CONVERGE_ADMISSION_MS: "60000",
  ...extra
})

const runTurns = async (count, database) => {
  const url = database ? await freshDatabase(`turns${count}`) : undefined
  const dir = tempDir()
  const gateways = []
  try {
    for (let i = 0; i < count; i++)
      gateways.push(
        await startGateway(
          gatewayEnv({
            CONVERGE_SESSIONS_DIR: database ? tempDir() : dir,
            ...(url ? { CONVERGE_DATABASE_URL: url } : {})
          })
        )
      )
    return await turnsPerSecond(gateways)
  } finally {
    await Promise.all(gateways.map(stop))
  }
}

// ---- run ----------------------------------------------------------------------------------

try {
  console.log(
    `Gateways on PostgreSQL vs the file backend, ${fmt(SESSIONS)} sessions, ${os.cpus().length} cores`
  )
  if (process.env.BENCH_ONLY_TURNS) {
    for (const n of process.env.BENCH_ONLY_TURNS.split(",").map(Number))
      console.log(n, JSON.stringify(await runTurns(n, true)))
    process.exit(0)
  }
  const file = await durableMerges(fileStore(tempDir()))
  const pg = await durableMerges(pgStore(await freshDatabase("store")))
  const statement = await statementLatency(await freshDatabase("statement"))
  console.log("")
  console.log("| store backend | durable merges/s | flushes | vs file |")
  console.log("| --- | ---: | ---: | ---: |")
  console.log(`| file (sessions.json) | ${fmt(file.perSecond)} | ${fmt(file.flushes)} | 1× |`)
  console.log(
    `| PostgreSQL | ${fmt(pg.perSecond)} | ${fmt(pg.flushes)} | ${fmt(pg.perSecond / file.perSecond, 2)}× |`
  )
  console.log("")
  console.log(
    `merge statement, one at a time (${fmt(STATEMENTS)}): p50 ${fmt(statement.p50, 2)} ms, p99 ${fmt(statement.p99, 2)} ms`
  )
  const rows = [["file, 1 gateway", await runTurns(1, false)]]
  for (const n of [1, 2, 3])
    rows.push([`PostgreSQL, ${n} gateway${n > 1 ? "s" : ""}`, await runTurns(n, true)])
  console.log("")
  console.log(
    `| turns over HTTP (${CLIENTS} clients, ${TURN_SECONDS} s) | turns/s | p50 | p99 | not completed | CPU busy (all cores) |`
  )
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |")
  for (const [name, r] of rows)
    console.log(
      `| ${name} | ${fmt(r.perSecond)} | ${fmt(r.p50, 1)} ms | ${fmt(r.p99, 1)} ms | ${fmt(r.other)} | ${fmt(r.busy)} % |`
    )
} finally {
  for (const name of databases) await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  for (const dir of tempDirs) nodeFs.rmSync(dir, { recursive: true, force: true })
}
