import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { once } from "node:events"
import { resolve } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { BIN, cleanup, converge, fixtureCopy, KEYS } from "./helpers.js"

afterAll(cleanup)

const GATEWAY_MAIN = resolve(BIN, "../../../gateway/dist/main.js")

describe("converge gateway", () => {
  it.skipIf(!existsSync(GATEWAY_MAIN))(
    "serves over HTTP the SessionStatus status --json printed, and stops cleanly on SIGINT",
    async () => {
      const dir = fixtureCopy()
      const offline = await converge(["status", KEYS.dm, "--json", "--sessions-dir", dir])
      expect(offline.code).toBe(0)

      const port = 20_000 + Math.floor(Math.random() * 20_000)
      const child = spawn(process.execPath, [BIN, "gateway", "--sessions-dir", dir], {
        env: { ...process.env, CONVERGE_PORT: String(port), CONVERGE_HOST: "127.0.0.1" },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      child.stdout.on("data", (chunk) => {
        output += String(chunk)
      })
      child.stderr.on("data", (chunk) => {
        output += String(chunk)
      })
      const exited = once(child, "exit")
      try {
        const deadline = Date.now() + 45_000
        while (!output.includes("listening") && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 100))
        expect(output).toContain("listening")
        const res = await fetch(`http://127.0.0.1:${port}/v1/sessions/${encodeURIComponent(KEYS.dm)}/status`)
        expect(res.status).toBe(200)
        expect(await res.json()).toEqual(JSON.parse(offline.stdout))
      } finally {
        child.kill("SIGINT")
      }
      const [code] = await exited
      expect(code).toBe(0)
      expect(output).toContain("stopped")
      await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow()
    }
  )
})
