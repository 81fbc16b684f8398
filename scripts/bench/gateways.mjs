// What the benchmarks that run gateway processes share: starting and stopping the built
// gateway, how busy the machine was, percentiles and number formatting.
import { spawn } from "node:child_process"
import * as nodeFs from "node:fs"
import { createInterface } from "node:readline"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"

export const MAIN = fileURLToPath(new URL("../../apps/gateway/dist/main.js", import.meta.url))

/**
 * Starts the built gateway with `env` (on 127.0.0.1, a free port) and resolves when it listens,
 * with `{ child, url }`; every JSON log line is given to `onLog` first.
 */
export const startGateway = (env, onLog = () => {}) =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        CONVERGE_HOST: "127.0.0.1",
        CONVERGE_PORT: "0",
        ...env
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    const timer = setTimeout(() => reject(new Error("a gateway did not start within 30 s")), 30_000)
    createInterface({ input: child.stdout }).on("line", (line) => {
      let log
      try {
        log = JSON.parse(line)
      } catch {
        return // not a log line
      }
      onLog(log)
      if (typeof log.message === "string" && log.message.startsWith("Converge gateway listening on ")) {
        clearTimeout(timer)
        resolve({ child, url: String(log.url) })
      }
    })
    child.once("exit", (code) => reject(new Error(`a gateway exited (${code}) before it listened`)))
  })

/** Stops a gateway with SIGTERM and resolves when it has exited. */
export const stopGateway = (g) =>
  new Promise((resolve) => {
    if (g.child.exitCode !== null) return resolve()
    g.child.once("exit", () => resolve())
    g.child.kill("SIGTERM")
  })

/** Busy and total jiffies of all cores (Linux `/proc/stat`), for how full the machine was. */
export const cpuTimes = () => {
  const fields = nodeFs
    .readFileSync("/proc/stat", "utf8")
    .split("\n")[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number)
  const total = fields.reduce((a, b) => a + b, 0)
  return { busy: total - fields[3] - (fields[4] ?? 0), total }
}

/** The share of the cores that was busy between two `cpuTimes()`, in %. */
export const busyPercent = (before, after) =>
  (100 * (after.busy - before.busy)) / (after.total - before.total)

export const percentile = (sorted, p) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

export const fmt = (x, digits = 0) =>
  x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })

/** One turn for `key` through gateway `g`: whether it completed, and how long it took. */
export const sendTurn = async (g, key, message) => {
  const t0 = performance.now()
  const r = await fetch(`${g.url}/v1/sessions/${key}/turns`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ message })
  })
  const body = await r.json().catch(() => ({}))
  return { ok: r.status === 200 && body.outcome === "completed", ms: performance.now() - t0 }
}

/**
 * `clients` loops sending turns for random sessions (of `sessions`, named by `keyOf`) for
 * `seconds`, each to the gateway `route(i)` picks, after one warm-up turn per session (so the
 * run measures turns on existing sessions): completed turns/s, the others, latency p50/p99 of
 * the completed ones, and how busy all cores were.
 */
export const turnsPerSecond = async ({ sessions, clients, seconds, keyOf, route }) => {
  let next = 0
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = next++; i < sessions; i = next++) await sendTurn(route(i), keyOf(i), `hello ${i}`)
    })
  )
  let completed = 0
  let other = 0
  const latencies = []
  const cpu0 = cpuTimes()
  const start = performance.now()
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() - start < seconds * 1000) {
        const i = Math.floor(Math.random() * sessions)
        const r = await sendTurn(route(i), keyOf(i), `turn on ${i}`)
        if (r.ok) {
          completed++
          latencies.push(r.ms)
        } else other++
      }
    })
  )
  const elapsed = (performance.now() - start) / 1000
  const cpu1 = cpuTimes()
  const sorted = Float64Array.from(latencies).sort()
  return {
    perSecond: completed / elapsed,
    other,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    busy: busyPercent(cpu0, cpu1)
  }
}
