/**
 * Test helpers: run the built `converge` binary as a child process, on copies of the
 * fixture sessions directory in temporary directories.
 */
import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))

/** The built binary (turbo builds it before the tests). */
export const BIN = resolve(here, "../dist/bin.js")

/** The fixture sessions directory (never written). */
export const FIXTURE = resolve(here, "../../../test/fixtures/openclaw-sessions")

/** The fixture's session keys and ids. */
export const KEYS = {
  main: "agent:main:main",
  dm: "agent:main:telegram:dm:4242",
  discord: "agent:main:discord:channel:99"
} as const
export const IDS = {
  main: "6f1c2a7e-0b1d-4c3e-9a51-2f7d8e9c0a11",
  dm: "9b8e7d6c-5a4b-4c3d-8e2f-1a0b9c8d7e6f",
  discord: "c0ffee00-1111-4222-8333-444455556666"
} as const

/** What a run of the binary printed, and how it exited. */
export interface Ran {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs `converge …args`; resolves whatever the exit code. */
export const converge = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<Ran> =>
  new Promise((resolvePromise, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...process.env, NO_COLOR: "1", ...env }, timeout: 55_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null && typeof error.code !== "number") return reject(error)
        resolvePromise({ code: error === null ? 0 : Number(error.code), stdout, stderr })
      }
    )
  })

const temps: Array<string> = []

/** A fresh temporary directory, removed by `cleanup`. */
export const tempDir = (prefix = "converge-cli-test-"): string => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  temps.push(dir)
  return dir
}

/** A copy of the fixture in a fresh temporary directory. */
export const fixtureCopy = (): string => {
  const dir = tempDir()
  cpSync(FIXTURE, dir, { recursive: true })
  return dir
}

/** Removes the temporary directories made so far. */
export const cleanup = (): void => {
  for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true })
}

/** Every file of `dir` → sha256 of its bytes: equal snapshots mean not one byte changed. */
export const snapshot = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const name of readdirSync(dir).sort()) {
    const file = join(dir, name)
    if (!statSync(file).isFile()) continue
    out[name] = createHash("sha256").update(readFileSync(file)).digest("hex")
  }
  return out
}

/** The parsed `sessions.json` of `dir`. */
export const sessionsJson = (dir: string): Record<string, Record<string, unknown>> =>
  JSON.parse(readFileSync(join(dir, "sessions.json"), "utf8")) as Record<string, Record<string, unknown>>

/** The table row of `key` in `text`, split into its cells (two or more spaces apart). */
export const row = (text: string, key: string): Array<string> | undefined =>
  text
    .split("\n")
    .find((line) => line.startsWith(`${key} `))
    ?.split(/ {2,}/)
