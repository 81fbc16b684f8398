/**
 * `converge gateway`: the same as `npm start` — runs the gateway app (`@converge/gateway`'s
 * `dist/main.js`) as a child process with this process's output, and forwards the signal
 * that stops it, so the gateway drains and flushes as it would on its own.
 */
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"
import { CliError } from "./CliError.js"

/** The directory of the `@converge/gateway` package, looked up from this file as Node looks up packages. */
const gatewayPackage = (): string | undefined => {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", "@converge", "gateway")
    if (existsSync(join(candidate, "package.json"))) return candidate
    if (dirname(dir) === dir) return undefined
  }
}

/** Where the built gateway entry is, or why it cannot be run. */
export const gatewayEntry = (): Effect.Effect<string, CliError> =>
  Effect.suspend(() => {
    const pkg = gatewayPackage()
    if (pkg === undefined)
      return Effect.fail(CliError.of("cannot find the gateway: @converge/gateway is not installed"))
    const entry = join(pkg, "dist", "main.js")
    return existsSync(entry)
      ? Effect.succeed(entry)
      : Effect.fail(CliError.of(`the gateway is not built: ${entry} is missing (run npm run build)`))
  })

/**
 * Runs the gateway until it exits; resolves with its exit code. Interrupting this effect
 * (SIGINT/SIGTERM to `converge`) sends SIGTERM to the gateway and waits for it to exit.
 */
export const runGateway = (env: Record<string, string | undefined>): Effect.Effect<number, CliError> =>
  Effect.flatMap(gatewayEntry(), (entry) =>
    Effect.async<number, CliError>((resume) => {
      // Its own process group: a terminal's Ctrl-C reaches only `converge`, which forwards it once.
      const child = spawn(process.execPath, [entry], {
        stdio: ["ignore", "inherit", "inherit"],
        env,
        detached: true
      })
      let exited = false
      child.once("error", (e) => resume(Effect.fail(CliError.of(`cannot start the gateway: ${e.message}`))))
      child.once("exit", (code, signal) => {
        exited = true
        resume(Effect.succeed(code ?? (signal === "SIGTERM" || signal === "SIGINT" ? 0 : 1)))
      })
      return Effect.async<void>((done) => {
        if (exited) return done(Effect.void)
        child.once("exit", () => done(Effect.void))
        child.kill("SIGTERM")
      })
    })
  )
