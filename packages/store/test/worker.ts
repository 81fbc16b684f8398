/**
 * A separate process merging into a shared sessions directory:
 * `node worker.mjs <sessionsDir> <name> <durationMs>` (bundled from this file by
 * realfs.test.ts). Prints what it wrote last, as JSON.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { Effect, Layer, Random } from "effect"
import { SessionStore } from "../src/index.js"

const [sessionsDir = "", name = "a", durationArg = "2000"] = process.argv.slice(2)
const durationMs = Number(durationArg)
// Each process changes one field the store does not own, on the shared entry and on its own keys.
const unowned = name === "a" ? "model" : "lastChannel"
const parity = name === "a" ? 0 : 1

const program = Effect.gen(function* () {
  const store = yield* SessionStore
  const start = Date.now()
  let i = 0
  const own: Record<string, number> = {}
  let lastUnowned = ""
  while (Date.now() - start < durationMs) {
    i++
    const value = `${name}-${i}`
    // Owned fields only go up, each process with its own parity so the join is known.
    const n = i * 2 + parity
    yield* store.merge("shared", {
      sessionId: "s-shared",
      generation: 1,
      sessionStartedAt: 1,
      compactionCount: n,
      totalTokens: n * 10,
      tokensAsOfSeq: n,
      lastRun: { runId: `run-${name}-${i}`, outcome: "completed", at: n, seq: n },
      [unowned]: value
    })
    lastUnowned = value
    const key = `${name}:${i % 25}`
    yield* store.merge(key, {
      sessionId: `s-${i % 25}`,
      generation: 1,
      sessionStartedAt: 1,
      compactionCount: i,
      [unowned]: value
    })
    own[key] = i
    yield* Effect.sleep(yield* Random.nextIntBetween(0, 3))
  }
  return { own, lastUnowned, merges: i, top: i * 2 + parity, stats: yield* store.stats }
})

Effect.runPromise(
  program.pipe(
    Effect.provide(SessionStore.layerFile({ sessionsDir, flushIntervalMs: 20 })),
    Effect.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer))
  )
).then(
  (result) => process.stdout.write(JSON.stringify(result)),
  (error: unknown) => {
    process.stderr.write(String(error))
    process.exitCode = 1
  }
)
