/** Test helpers: temporary sessions directories, the fixture, and layers over the real file system. */
import * as FileSystem from "@effect/platform/FileSystem"
import { NodeContext, NodeFileSystem, NodePath } from "@effect/platform-node"
import { Context, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Transcript, type TranscriptOptions } from "../src/index.js"

/** The repo's copy of the OpenClaw fixture (read only). */
export const fixtureDir = path.resolve(import.meta.dirname, "../../../test/fixtures/openclaw-sessions")

/** Session ids of the fixture. */
export const MAIN = "6f1c2a7e-0b1d-4c3e-9a51-2f7d8e9c0a11"
export const DM = "9b8e7d6c-5a4b-4c3d-8e2f-1a0b9c8d7e6f"

/** A fresh temporary directory, removed when the scope closes. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "converge-transcript-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** A temporary copy of the fixture directory. */
export const fixtureCopy = Effect.tap(tempDir, (dir) =>
  Effect.sync(() => {
    for (const name of fs.readdirSync(fixtureDir))
      fs.copyFileSync(path.join(fixtureDir, name), path.join(dir, name))
  })
)

/** `Transcript` over the real file system. */
export const nodeLayer = (sessionsDir: string, options: Partial<TranscriptOptions> = {}) =>
  Transcript.layer({ sessionsDir, leaseMs: 10_000, ...options }).pipe(Layer.provide(NodeContext.layer))

/** Builds a `Transcript` in the current scope (one runtime = one lease owner). */
export const transcriptIn = (sessionsDir: string, options: Partial<TranscriptOptions> = {}) =>
  Layer.build(nodeLayer(sessionsDir, options)).pipe(Effect.map((ctx) => Context.get(ctx, Transcript)))

/** The lines of a file (the text after the last newline, if any, is returned as `torn`). */
export const linesOf = (file: string) => {
  const text = fs.readFileSync(file, "utf8")
  const lines = text.split("\n")
  const rest = lines.pop() ?? ""
  return { lines, torn: rest.length > 0 ? rest : undefined }
}

/** A user message entry. */
export const user = (text: string) => ({ type: "message" as const, message: { role: "user", content: text } })

/** An assistant message entry with usage. */
export const reply = (text: string, promptSeq: number, input: number, output: number) => ({
  type: "message" as const,
  promptSeq,
  message: {
    role: "assistant",
    content: [{ type: "text", text }],
    usage: { input, output, totalTokens: input + output }
  }
})

/**
 * Hooks of `hookedFileSystem`: `beforeSync(path)` runs before a handle's `sync`; `onRead(bytes)`
 * counts reads; `onOpen(path, flag)` sees every successful open.
 */
export interface FsHooks {
  readonly onOpen?: (file: string, flag: string | undefined) => void
  readonly beforeSync?: (file: string) => Effect.Effect<void>
  readonly onRead?: (file: string, bytes: number) => void
}

/** The Node file system with hooks around syncs and reads. */
export const hookedFileSystem = (hooks: FsHooks): Layer.Layer<FileSystem.FileSystem> =>
  Layer.effect(
    FileSystem.FileSystem,
    Effect.map(FileSystem.FileSystem, (base): FileSystem.FileSystem => {
      const wrap = (file: string, f: FileSystem.File): FileSystem.File => ({
        [FileSystem.FileTypeId]: FileSystem.FileTypeId,
        fd: f.fd,
        get stat() {
          return f.stat
        },
        seek: (offset, from) => f.seek(offset, from),
        sync: Effect.zipRight(hooks.beforeSync?.(file) ?? Effect.void, f.sync),
        read: (buffer) => Effect.tap(f.read(buffer), (n) => hooks.onRead?.(file, Number(n))),
        readAlloc: (size) =>
          Effect.tap(f.readAlloc(size), (o) => hooks.onRead?.(file, o._tag === "Some" ? o.value.length : 0)),
        truncate: (length) => f.truncate(length),
        write: (buffer) => f.write(buffer),
        writeAll: (buffer) => f.writeAll(buffer)
      })
      return {
        ...base,
        open: (file, options) =>
          Effect.map(base.open(file, options), (f) => {
            hooks.onOpen?.(file, options?.flag)
            return wrap(file, f)
          }),
        readFile: (file) => Effect.tap(base.readFile(file), (bytes) => hooks.onRead?.(file, bytes.length)),
        readFileString: (file, encoding) =>
          Effect.tap(base.readFileString(file, encoding), (text) => hooks.onRead?.(file, text.length))
      }
    })
  ).pipe(Layer.provide(NodeFileSystem.layer))

/** Builds a `Transcript` over a hooked Node file system in the current scope. */
export const hookedTranscriptIn = (
  sessionsDir: string,
  hooks: FsHooks,
  options: Partial<TranscriptOptions> = {}
) =>
  Layer.build(
    Transcript.layer({ sessionsDir, leaseMs: 10_000, ...options }).pipe(
      Layer.provide(Layer.merge(hookedFileSystem(hooks), NodePath.layer))
    )
  ).pipe(Effect.map((ctx) => Context.get(ctx, Transcript)))
