/**
 * The file backend on the real file system: the layout on disk, and two Node processes
 * merging into one directory at the same time.
 */
import { execFile } from "node:child_process"
import * as nodeFs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import type { SessionEntry, StorageError } from "@converge/domain"
import { NodeContext } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { build } from "tsup"
import { FaultControl, FaultFileSystem } from "@converge/testkit"
import { FileSystem } from "@effect/platform"
import { Effect, Layer, Option } from "effect"
import { SessionStore } from "../src/index.js"
import { fixtureDir, v } from "./helpers.js"

const here = nodePath.dirname(fileURLToPath(import.meta.url))
const run = promisify(execFile)

/** Bundles `worker.ts` (from source, like the tests) into one `.mjs` file under `dir`. */
const bundleWorker = async (dir: string): Promise<string> => {
  await build({
    entry: { worker: nodePath.join(here, "worker.ts") },
    outDir: dir,
    format: ["esm"],
    platform: "node",
    target: "node20",
    noExternal: [/.*/],
    dts: false,
    sourcemap: false,
    splitting: false,
    silent: true,
    config: false,
    outExtension: () => ({ js: ".mjs" }),
    esbuildOptions: (options) => {
      options.conditions = ["converge-source"]
    }
  })
  return nodePath.join(dir, "worker.mjs")
}

let tmp = ""
beforeAll(() => {
  tmp = nodeFs.mkdtempSync(nodePath.join(os.tmpdir(), "converge-store-"))
})
afterAll(() => nodeFs.rmSync(tmp, { recursive: true, force: true }))

const freshDir = (name: string) => {
  const dir = nodePath.join(tmp, name)
  nodeFs.mkdirSync(dir, { recursive: true })
  return dir
}

describe("on the real file system", () => {
  it.live(
    "writes OpenClaw's sessions.json with mode 0600, keeps unknown fields, leaves no temp or lock file",
    () =>
      Effect.gen(function* () {
        const dir = freshDir("layout")
        nodeFs.cpSync(fixtureDir, dir, { recursive: true })
        const original: Record<string, SessionEntry> = JSON.parse(
          nodeFs.readFileSync(`${dir}/sessions.json`, "utf8")
        )
        yield* Effect.gen(function* () {
          const store = yield* SessionStore
          yield* store.merge("agent:main:discord:channel:99", {
            ...v("c0ffee00-1111-4222-8333-444455556666", 0, 0),
            compactionBase: 2,
            compactionCount: 3
          })
          yield* store.merge("agent:new", { ...v("n-1"), compactionCount: 0 })
        }).pipe(
          Effect.provide(SessionStore.layerFile({ sessionsDir: dir, flushIntervalMs: 5 })),
          Effect.provide(NodeContext.layer)
        )
        const onDisk: Record<string, SessionEntry> = JSON.parse(
          nodeFs.readFileSync(`${dir}/sessions.json`, "utf8")
        )
        expect(onDisk["agent:main:main"]).toEqual(original["agent:main:main"])
        expect(onDisk["agent:main:discord:channel:99"]).toMatchObject({
          compactionCount: 3,
          sendPolicy: "allow",
          totalTokens: 5000
        })
        expect(nodeFs.statSync(`${dir}/sessions.json`).mode & 0o777).toBe(0o600)
        expect(
          nodeFs
            .readdirSync(dir)
            .filter((n) => n.startsWith("sessions.json"))
            .sort()
        ).toEqual(["sessions.json"])
      })
  )

  it.live(
    "skips re-reading a file it wrote, while inode, size and mtime say it is unchanged; reads it when they change",
    () =>
      Effect.gen(function* () {
        const dir = freshDir("skip-read")
        const fs = yield* FileSystem.FileSystem
        const reads = (flush: Effect.Effect<void, StorageError, never>) =>
          Effect.gen(function* () {
            const control = yield* FaultControl
            yield* control.arm({ at: 1_000_000, mode: "fail" })
            yield* flush
            const calls = yield* control.calls
            yield* control.disarm
            return calls.filter((c) => c === "File.read").length
          })
        yield* Effect.gen(function* () {
          const store = yield* SessionStore
          // A flush that finds nothing to write: the file keeps its mtime, seen again a little later.
          const flushUnchanged = Effect.zipRight(
            Effect.zipRight(
              store.merge("a", { ...v("s-a"), model: "m2" }),
              store.merge("a", { ...v("s-a"), model: "m1" })
            ),
            reads(store.flush)
          )
          yield* store.merge("a", { ...v("s-a"), model: "m1" })
          yield* store.flush
          // The mtime must be in the past (a millisecond tick) before a sighting of it is trusted.
          yield* Effect.sleep(5)
          yield* flushUnchanged
          yield* Effect.sleep(5)
          expect(yield* flushUnchanged).toBe(0)
          const text = yield* fs.readFileString(`${dir}/sessions.json`)
          yield* fs.writeFileString(`${dir}/sessions.json`, text.replace('"model": "m1"', '"model": "m3"'))
          expect(yield* flushUnchanged).toBe(1)
          expect(Option.getOrThrow(yield* store.get("a")).model).toBe("m3")
        }).pipe(Effect.provide(SessionStore.layerFile({ sessionsDir: dir, flushIntervalMs: 5 })))
      }).pipe(Effect.provide(FaultFileSystem.layer.pipe(Layer.provideMerge(NodeContext.layer))))
  )

  it.live(
    "two Node processes merging into one directory for seconds: the file holds the join and every unowned change",
    () =>
      Effect.gen(function* () {
        const worker = yield* Effect.promise(() => bundleWorker(freshDir("worker")))
        const dir = freshDir("two-processes")
        const [a, b] = yield* Effect.promise(() =>
          Promise.all(
            ["a", "b"].map((name) => run(process.execPath, [worker, dir, name, "2000"], { cwd: here }))
          )
        )
        type Result = { own: Record<string, number>; lastUnowned: string; merges: number; top: number }
        const ra: Result = JSON.parse(a?.stdout ?? "")
        const rb: Result = JSON.parse(b?.stdout ?? "")
        const onDisk: Record<string, SessionEntry> = JSON.parse(
          nodeFs.readFileSync(`${dir}/sessions.json`, "utf8")
        )
        const top = Math.max(ra.top, rb.top)
        expect(ra.merges).toBeGreaterThan(50)
        expect(rb.merges).toBeGreaterThan(50)
        expect(onDisk.shared).toMatchObject({
          sessionId: "s-shared",
          compactionCount: top,
          totalTokens: top * 10,
          tokensAsOfSeq: top,
          lastRun: { seq: top },
          model: ra.lastUnowned,
          lastChannel: rb.lastUnowned
        })
        for (const [key, count] of [...Object.entries(ra.own), ...Object.entries(rb.own)]) {
          expect(onDisk[key]?.compactionCount).toBe(count)
        }
        expect(Object.keys(onDisk).length).toBe(1 + Object.keys(ra.own).length + Object.keys(rb.own).length)
        expect(nodeFs.readdirSync(dir).filter((n) => n !== "sessions.json")).toEqual([])
      }),
    60_000
  )
})
