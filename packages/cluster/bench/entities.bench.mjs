// Sessions as cluster entities, gateways on one PostgreSQL database, on this machine:
//  1. turns/s over HTTP at 1,000 sessions with 1, 2 and 3 runners (every gateway is one), each
//     request sent to a random gateway (no balancer: the cluster forwards it to the session's
//     owner), the local model answering at once (0 ms);
//  2. the latency one turn adds when it is forwarded (gateway A → owner B) against a turn sent
//     to the owner itself, p50/p99, one turn at a time (2 gateways; the owner of each session
//     is the gateway whose log says it hosts it).
// The machine's PostgreSQL (127.0.0.1:5432, or CONVERGE_TEST_DATABASE_URL's server), in
// databases created for the run and dropped after. Runs the built gateway.
import { execFileSync } from "node:child_process"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import {
  fmt,
  percentile,
  sendTurn,
  startGateway as startBuiltGateway,
  stopGateway as stop,
  turnsPerSecond as measureTurns
} from "../../../scripts/bench/gateways.mjs"

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 1000)
const TURN_SECONDS = Number(process.env.BENCH_TURN_SECONDS ?? 8)
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 48)
const LATENCY_TURNS = Number(process.env.BENCH_LATENCY_TURNS ?? 1000)
const server = process.env.CONVERGE_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

const psql = (database, sql) =>
  execFileSync("psql", [database, "-qAtc", sql], { stdio: ["ignore", "pipe", "pipe"] })
const databases = []
const freshDatabase = (tag) => {
  const name = `converge_bench_${tag}_${process.pid}`
  psql(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  psql(server, `CREATE DATABASE ${name}`)
  databases.push(name)
  return Object.assign(new URL(server), { pathname: `/${name}` }).toString()
}
const tempDirs = []
const tempDir = () => {
  const dir = nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "converge-bench-"))
  tempDirs.push(dir)
  return dir
}

const keyOf = (i) => `agent:main:bench:${i}`

/** A gateway process; `hosted` is the set of session keys its log says it hosts now. */
const startGateway = async (env) => {
  const hosted = new Set()
  const g = await startBuiltGateway(env, (log) => {
    if (log.message === "session hosted on this runner") hosted.add(log.sessionKey)
    else if (log.message === "session no longer hosted on this runner") hosted.delete(log.sessionKey)
  })
  return { ...g, hosted }
}

const turn = (g, i, message) => sendTurn(g, keyOf(i), message)

const gatewayEnv = (url) => ({
  CONVERGE_DATABASE_URL: url,
  CONVERGE_SESSIONS_DIR: tempDir(),
  CONVERGE_LOCAL_REPLY_MS: "0",
  CONVERGE_LOCAL_SUMMARY_MS: "0",
  CONVERGE_FLUSH_INTERVAL_MS: "50",
  CONVERGE_MAX_TURNS: "100000",
  CONVERGE_ADMISSION_MS: "60000"
})

const startGateways = async (count, tag) => {
  const url = freshDatabase(tag)
  const gateways = []
  for (let i = 0; i < count; i++) gateways.push(await startGateway(gatewayEnv(url)))
  // Every runner registered and holding its shards before the clock starts.
  await new Promise((resolve) => setTimeout(resolve, 4_000))
  return gateways
}

/** Turns for random sessions, each sent to a random gateway (no balancer). */
const turnsPerSecond = (gateways) =>
  measureTurns({
    sessions: SESSIONS,
    clients: CLIENTS,
    seconds: TURN_SECONDS,
    keyOf,
    route: () => gateways[Math.floor(Math.random() * gateways.length)]
  })

/** One turn at a time, alternately to the session's owner and to the other gateway. */
const forwardedLatency = async ([a, b]) => {
  const keys = Array.from({ length: 100 }, (_, i) => i)
  for (const i of keys) await turn(a, i, "warm up")
  const local = []
  const forwarded = []
  for (let n = 0; n < LATENCY_TURNS; n++) {
    const i = keys[n % keys.length]
    const owner = a.hosted.has(keyOf(i)) ? a : b.hosted.has(keyOf(i)) ? b : undefined
    if (owner === undefined) continue
    const other = owner === a ? b : a
    const l = await turn(owner, i, "local")
    const f = await turn(other, i, "forwarded")
    if (l.ok) local.push(l.ms)
    if (f.ok) forwarded.push(f.ms)
  }
  const stats = (xs) => {
    const sorted = Float64Array.from(xs).sort()
    return { n: xs.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99) }
  }
  return { local: stats(local), forwarded: stats(forwarded) }
}

try {
  console.log(
    `Sessions as cluster entities on PostgreSQL, ${fmt(SESSIONS)} sessions, ${os.cpus().length} cores`
  )
  const rows = []
  for (const n of [1, 2, 3]) {
    const gateways = await startGateways(n, `entities${n}`)
    try {
      rows.push([n, await turnsPerSecond(gateways)])
    } finally {
      await Promise.all(gateways.map(stop))
    }
  }
  console.log("")
  console.log(
    `| runners (random gateway per request, ${CLIENTS} clients, ${TURN_SECONDS} s) | turns/s | p50 | p99 | not completed | CPU busy (all cores) |`
  )
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |")
  for (const [n, r] of rows)
    console.log(
      `| ${n} | ${fmt(r.perSecond)} | ${fmt(r.p50, 1)} ms | ${fmt(r.p99, 1)} ms | ${fmt(r.other)} | ${fmt(r.busy)} % |`
    )
  const pair = await startGateways(2, "latency")
  try {
    const { local, forwarded } = await forwardedLatency(pair)
    console.log("")
    console.log("| one turn at a time, 2 gateways | turns | p50 | p99 |")
    console.log("| --- | ---: | ---: | ---: |")
    console.log(
      `| sent to the session's owner | ${fmt(local.n)} | ${fmt(local.p50, 2)} ms | ${fmt(local.p99, 2)} ms |`
    )
    console.log(
      `| sent to the other gateway (forwarded) | ${fmt(forwarded.n)} | ${fmt(forwarded.p50, 2)} ms | ${fmt(forwarded.p99, 2)} ms |`
    )
    console.log(
      `| added by forwarding | | ${fmt(forwarded.p50 - local.p50, 2)} ms | ${fmt(forwarded.p99 - local.p99, 2)} ms |`
    )
  } finally {
    await Promise.all(pair.map(stop))
  }
} finally {
  for (const name of databases) psql(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  for (const dir of tempDirs) nodeFs.rmSync(dir, { recursive: true, force: true })
}
