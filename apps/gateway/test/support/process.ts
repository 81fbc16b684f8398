/**
 * Runs the built gateway (`dist/main.js`) as a real process on a free loopback port, reads
 * its JSON log lines, and kills it for real. Every process started here is killed by
 * `killAll` (call it in `afterEach`/`afterAll`).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

/** The process entry `npm start` runs. */
export const MAIN = fileURLToPath(new URL("../../dist/main.js", import.meta.url))

/** One JSON log line. */
export type LogLine = Record<string, unknown> & { readonly message?: unknown; readonly level?: string }

/** A gateway process. */
export interface GatewayProcess {
  readonly url: string
  readonly child: ChildProcess
  /** Every stdout line parsed as JSON (lines that are not JSON are kept as `{ raw }`). */
  readonly logs: Array<LogLine>
  readonly stderr: Array<string>
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** Waits for a log line matching `predicate`. */
  readonly waitForLog: (predicate: (line: LogLine) => boolean, timeoutMs?: number) => Promise<LogLine>
}

const live = new Set<ChildProcess>()

/** The environment of a child: this one without any `CONVERGE_*` or provider variable, plus `env`. */
export const childEnv = (env: Record<string, string>): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || /^(CONVERGE_|OPENAI_|ANTHROPIC_)/.test(key)) continue
    out[key] = value
  }
  return { ...out, ...env }
}

/** Spawns `node dist/main.js` with `env`; resolves once it printed its address (or rejects with its output). */
export const spawnGateway = (
  env: Record<string, string>,
  options: { readonly startTimeoutMs?: number } = {}
) => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build the gateway first (npx turbo run build)`)
  const child = spawn(process.execPath, [MAIN], {
    env: childEnv({ CONVERGE_HOST: "127.0.0.1", CONVERGE_PORT: "0", ...env }),
    stdio: ["ignore", "pipe", "pipe"]
  })
  live.add(child)
  const logs: Array<LogLine> = []
  const stderr: Array<string> = []
  const waiters = new Set<() => void>()
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      live.delete(child)
      resolve({ code, signal })
      for (const w of waiters) w()
    })
  })
  createInterface({ input: child.stdout! }).on("line", (line) => {
    try {
      logs.push(JSON.parse(line) as LogLine)
    } catch {
      logs.push({ raw: line })
    }
    for (const w of waiters) w()
  })
  createInterface({ input: child.stderr! }).on("line", (line) => stderr.push(line))
  let exitedYet = false
  void exited.then(() => {
    exitedYet = true
  })

  const waitForLog = (predicate: (line: LogLine) => boolean, timeoutMs = 30_000) =>
    new Promise<LogLine>((resolve, reject) => {
      const check = () => {
        const found = logs.find(predicate)
        if (found !== undefined) {
          cleanup()
          resolve(found)
        } else if (exitedYet) {
          cleanup()
          reject(new Error(`gateway exited:\n${describe()}`))
        }
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`timed out waiting for a log line:\n${describe()}`))
      }, timeoutMs)
      const cleanup = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  const describe = () => [...logs.map((l) => JSON.stringify(l)), ...stderr].slice(-30).join("\n")

  return {
    child,
    logs,
    stderr,
    exited,
    waitForLog,
    ready: waitForLog(
      (line) => typeof line.message === "string" && line.message.startsWith("Converge gateway listening on "),
      options.startTimeoutMs ?? 40_000
    ).then((line): GatewayProcess => ({ url: String(line.url), child, logs, stderr, exited, waitForLog }))
  }
}

/** Starts a gateway and waits until it listens. */
export const startGateway = (env: Record<string, string>, options?: { readonly startTimeoutMs?: number }) =>
  spawnGateway(env, options).ready

/** Sends `signal` and waits for the exit. */
export const stopGateway = async (
  gateway: Pick<GatewayProcess, "child" | "exited">,
  signal: NodeJS.Signals = "SIGTERM"
) => {
  if (gateway.child.exitCode === null && gateway.child.signalCode === null) gateway.child.kill(signal)
  return gateway.exited
}

/** Kills (SIGKILL) every gateway process still running. */
export const killAll = async () => {
  const children = [...live]
  for (const child of children) child.kill("SIGKILL")
  await Promise.all(
    children.map((child) =>
      child.exitCode !== null || child.signalCode !== null
        ? undefined
        : new Promise<void>((resolve) => child.once("exit", () => resolve()))
    )
  )
}
