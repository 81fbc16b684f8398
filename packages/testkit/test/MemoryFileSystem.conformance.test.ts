import type * as PlatformError from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, type Layer, Option, type Scope, TestClock } from "effect"
import { MemoryFileSystem } from "../src/index.js"

// The SAME assertions run against Node's file system (in a real temp dir) and the memory
// one, so code written against Node behaves the same on MemoryFileSystem.
const backends: ReadonlyArray<readonly [string, Layer.Layer<FileSystem.FileSystem>]> = [
  ["node", NodeFileSystem.layer],
  ["memory", MemoryFileSystem.layer]
]

const text = (s: string) => new TextEncoder().encode(s)
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

/** The `reason` of the SystemError `effect` fails with (or the error's tag). */
const reasonOf = <A, R>(effect: Effect.Effect<A, PlatformError.PlatformError, R>) =>
  Effect.map(Effect.flip(effect), (error) => (error._tag === "SystemError" ? error.reason : error._tag))

describe.each(backends)("%s FileSystem", (_name, fsLayer) => {
  const inTemp = <A, E>(
    body: (fs: FileSystem.FileSystem, root: string) => Effect.Effect<A, E, Scope.Scope>
  ): Effect.Effect<A, E | PlatformError.PlatformError> =>
    Effect.scoped(
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        const root = yield* fs.makeTempDirectoryScoped({ prefix: "converge-testkit-" })
        return yield* body(fs, root)
      })
    ).pipe(Effect.provide(fsLayer))

  it.effect("writeFile / readFile round-trip, flags a and wx", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        const path = `${root}/a.txt`
        yield* fs.writeFileString(path, "hello")
        expect(yield* fs.readFileString(path)).toBe("hello")
        yield* fs.writeFile(path, text(" world"), { flag: "a" })
        expect(yield* fs.readFileString(path)).toBe("hello world")
        yield* fs.writeFileString(path, "bye")
        expect(decode(yield* fs.readFile(path))).toBe("bye")
        expect(yield* reasonOf(fs.writeFileString(path, "x", { flag: "wx" }))).toBe("AlreadyExists")
        yield* fs.writeFileString(`${root}/new.txt`, "x", { flag: "wx" })
        expect(yield* fs.readFileString(`${root}/new.txt`)).toBe("x")
      })
    )
  )

  it.effect("file creation needs an existing parent directory", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        expect(yield* reasonOf(fs.writeFileString(`${root}/missing/a.txt`, "x"))).toBe("NotFound")
        yield* fs.writeFileString(`${root}/file`, "x")
        expect(yield* reasonOf(fs.writeFileString(`${root}/file/a.txt`, "x"))).toBe("BadResource")
        expect(yield* reasonOf(Effect.scoped(fs.open(`${root}/missing/b`, { flag: "w" })))).toBe("NotFound")
      })
    )
  )

  it.effect("readFile fails NotFound on a missing file and BadResource on a directory", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        expect(yield* reasonOf(fs.readFile(`${root}/nope`))).toBe("NotFound")
        expect(yield* reasonOf(fs.readFileString(`${root}/nope`))).toBe("NotFound")
        expect(yield* reasonOf(fs.readFile(root))).toBe("BadResource")
        expect(yield* reasonOf(fs.writeFileString(root, "x"))).toBe("BadResource")
      })
    )
  )

  it.effect("open r / r+ / w / wx / w+ follow the flags", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        const path = `${root}/f`
        expect(yield* reasonOf(Effect.scoped(fs.open(path)))).toBe("NotFound")
        expect(yield* reasonOf(Effect.scoped(fs.open(path, { flag: "r+" })))).toBe("NotFound")
        yield* fs.writeFileString(path, "abcdef")

        // r+ overwrites in place, without truncating.
        yield* Effect.scoped(
          Effect.gen(function* () {
            const file = yield* fs.open(path, { flag: "r+" })
            const head = yield* file.readAlloc(2)
            expect(Option.map(head, decode)).toEqual(Option.some("ab"))
            yield* file.writeAll(text("XY"))
            yield* file.sync
          })
        )
        expect(yield* fs.readFileString(path)).toBe("abXYef")

        // r reads in chunks and reports the end with None; it cannot write or truncate.
        yield* Effect.scoped(
          Effect.gen(function* () {
            const file = yield* fs.open(path)
            const buffer = new Uint8Array(4)
            expect(yield* file.read(buffer)).toBe(FileSystem.Size(4))
            expect(decode(buffer)).toBe("abXY")
            expect(Option.map(yield* file.readAlloc(10), decode)).toEqual(Option.some("ef"))
            expect(yield* file.readAlloc(10)).toEqual(Option.none())
            expect(yield* file.read(buffer)).toBe(FileSystem.Size(0))
            expect(yield* reasonOf(file.write(text("z")))).toBe("Unknown")
            expect(yield* reasonOf(file.truncate(0))).toBe("Unknown")
            expect((yield* file.stat).size).toBe(FileSystem.Size(6))
          })
        )

        // w truncates and cannot read.
        yield* Effect.scoped(
          Effect.gen(function* () {
            const file = yield* fs.open(path, { flag: "w" })
            expect((yield* file.stat).size).toBe(FileSystem.Size(0))
            expect(yield* file.write(text("12345"))).toBe(FileSystem.Size(5))
            expect(yield* reasonOf(file.readAlloc(1))).toBe("Unknown")
          })
        )
        expect(yield* fs.readFileString(path)).toBe("12345")

        expect(yield* reasonOf(Effect.scoped(fs.open(path, { flag: "wx" })))).toBe("AlreadyExists")
        yield* Effect.scoped(
          Effect.flatMap(fs.open(`${root}/fresh`, { flag: "wx" }), (file) => file.writeAll(text("new")))
        )
        expect(yield* fs.readFileString(`${root}/fresh`)).toBe("new")

        // w+ truncates, then reads back what it wrote after a seek.
        yield* Effect.scoped(
          Effect.gen(function* () {
            const file = yield* fs.open(path, { flag: "w+" })
            yield* file.writeAll(text("hello"))
            yield* file.seek(1, "start")
            expect(Option.map(yield* file.readAlloc(3), decode)).toEqual(Option.some("ell"))
            yield* file.seek(-2, "current")
            yield* file.writeAll(text("EL"))
          })
        )
        expect(yield* fs.readFileString(path)).toBe("heELo")
      })
    )
  )

  it.effect("open a / a+ always append, whatever the position", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        const path = `${root}/log`
        yield* Effect.scoped(
          Effect.gen(function* () {
            const file = yield* fs.open(path, { flag: "a" })
            yield* file.writeAll(text("one\n"))
            yield* file.seek(0, "start")
            yield* file.writeAll(text("two\n"))
            expect(yield* reasonOf(file.readAlloc(1))).toBe("Unknown")
          })
        )
        expect(yield* fs.readFileString(path)).toBe("one\ntwo\n")
        yield* Effect.scoped(
          Effect.gen(function* () {
            const file = yield* fs.open(path, { flag: "a+" })
            expect(Option.map(yield* file.readAlloc(4), decode)).toEqual(Option.some("one\n"))
            yield* file.writeAll(text("three\n"))
            expect((yield* file.stat).size).toBe(FileSystem.Size(14))
          })
        )
        expect(yield* fs.readFileString(path)).toBe("one\ntwo\nthree\n")
      })
    )
  )

  it.effect("a handle truncates its file, and cannot be used once its scope closed", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        const path = `${root}/t`
        yield* fs.writeFileString(path, "0123456789")
        const file = yield* Effect.scoped(
          Effect.gen(function* () {
            const file = yield* fs.open(path, { flag: "r+" })
            yield* file.seek(8, "start")
            yield* file.truncate(4)
            // The position was clamped to the new end, so this write appends.
            yield* file.writeAll(text("!"))
            return file
          })
        )
        expect(yield* fs.readFileString(path)).toBe("0123!")
        expect(yield* reasonOf(file.readAlloc(1))).toBe("Unknown")
        expect(yield* reasonOf(file.write(text("x")))).toBe("Unknown")
      })
    )
  )

  it.effect("a directory opens read-only and syncs (the fsync after an atomic rename)", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        yield* Effect.scoped(
          Effect.gen(function* () {
            const dir = yield* fs.open(root, { flag: "r" })
            yield* dir.sync
            expect((yield* dir.stat).type).toBe("Directory")
            expect(yield* reasonOf(dir.readAlloc(1))).toBe("BadResource")
          })
        )
        expect(yield* reasonOf(Effect.scoped(fs.open(root, { flag: "w" })))).toBe("BadResource")
      })
    )
  )

  it.effect("an open handle keeps writing to its file after the file was renamed", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        yield* Effect.scoped(
          Effect.gen(function* () {
            const file = yield* fs.open(`${root}/tmp`, { flag: "w" })
            yield* file.writeAll(text("a"))
            yield* fs.rename(`${root}/tmp`, `${root}/final`)
            yield* file.writeAll(text("b"))
          })
        )
        expect(yield* fs.readFileString(`${root}/final`)).toBe("ab")
        expect(yield* fs.exists(`${root}/tmp`)).toBe(false)
      })
    )
  )

  it.effect("rename replaces the target whole, and moves directories with their contents", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        yield* fs.writeFileString(`${root}/a`, "new")
        yield* fs.writeFileString(`${root}/b`, "old")
        yield* fs.rename(`${root}/a`, `${root}/b`)
        expect(yield* fs.readFileString(`${root}/b`)).toBe("new")
        expect(yield* fs.exists(`${root}/a`)).toBe(false)
        yield* fs.rename(`${root}/b`, `${root}/b`)
        expect(yield* fs.readFileString(`${root}/b`)).toBe("new")

        yield* fs.makeDirectory(`${root}/d/e`, { recursive: true })
        yield* fs.writeFileString(`${root}/d/e/f`, "deep")
        yield* fs.rename(`${root}/d`, `${root}/moved`)
        expect(yield* fs.readFileString(`${root}/moved/e/f`)).toBe("deep")
        expect(yield* fs.exists(`${root}/d`)).toBe(false)
        yield* fs.makeDirectory(`${root}/empty`)
        yield* fs.rename(`${root}/moved`, `${root}/empty`)
        expect(yield* fs.readFileString(`${root}/empty/e/f`)).toBe("deep")
      })
    )
  )

  it.effect("rename fails like Node", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        yield* fs.writeFileString(`${root}/f`, "x")
        yield* fs.makeDirectory(`${root}/d`)
        yield* fs.makeDirectory(`${root}/full`)
        yield* fs.writeFileString(`${root}/full/g`, "y")
        expect(yield* reasonOf(fs.rename(`${root}/nope`, `${root}/x`))).toBe("NotFound")
        expect(yield* reasonOf(fs.rename(`${root}/f`, `${root}/missing/x`))).toBe("NotFound")
        expect(yield* reasonOf(fs.rename(`${root}/f`, `${root}/d`))).toBe("BadResource")
        expect(yield* reasonOf(fs.rename(`${root}/d`, `${root}/f`))).toBe("BadResource")
        expect(yield* reasonOf(fs.rename(`${root}/d`, `${root}/full`))).toBe("Unknown")
        expect(yield* reasonOf(fs.rename(`${root}/d`, `${root}/d/inner`))).toBe("Unknown")
      })
    )
  )

  it.effect("remove: files, missing paths, force, and recursive directories", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        yield* fs.writeFileString(`${root}/f`, "x")
        yield* fs.remove(`${root}/f`)
        expect(yield* fs.exists(`${root}/f`)).toBe(false)
        expect(yield* reasonOf(fs.remove(`${root}/f`))).toBe("NotFound")
        yield* fs.remove(`${root}/f`, { force: true })
        yield* fs.makeDirectory(`${root}/d/e`, { recursive: true })
        yield* fs.writeFileString(`${root}/d/e/g`, "x")
        expect(yield* reasonOf(fs.remove(`${root}/d`))).toBe("Unknown")
        yield* fs.remove(`${root}/d`, { recursive: true })
        expect(yield* fs.exists(`${root}/d`)).toBe(false)
        expect(yield* fs.readDirectory(root)).toEqual([])
      })
    )
  )

  it.effect("stat reports type, size, mode and mtime; chmod changes the mode", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        yield* fs.writeFileString(`${root}/f`, "12345")
        const file = yield* fs.stat(`${root}/f`)
        expect(file.type).toBe("File")
        expect(file.size).toBe(FileSystem.Size(5))
        expect(file.mode & 0o170000).toBe(0o100000)
        expect(Option.isSome(file.mtime)).toBe(true)
        yield* fs.chmod(`${root}/f`, 0o600)
        expect((yield* fs.stat(`${root}/f`)).mode & 0o7777).toBe(0o600)
        const dir = yield* fs.stat(root)
        expect(dir.type).toBe("Directory")
        expect(dir.mode & 0o170000).toBe(0o040000)
        expect(yield* reasonOf(fs.stat(`${root}/nope`))).toBe("NotFound")
        expect(yield* reasonOf(fs.chmod(`${root}/nope`, 0o600))).toBe("NotFound")
      })
    )
  )

  it.effect("exists and access", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        yield* fs.writeFileString(`${root}/f`, "x")
        expect(yield* fs.exists(`${root}/f`)).toBe(true)
        expect(yield* fs.exists(root)).toBe(true)
        expect(yield* fs.exists(`${root}/nope`)).toBe(false)
        expect(yield* reasonOf(fs.exists(`${root}/f/under`))).toBe("BadResource")
        yield* fs.access(`${root}/f`)
        yield* fs.access(`${root}/f`, { readable: true, writable: true })
        expect(yield* reasonOf(fs.access(`${root}/nope`))).toBe("NotFound")
      })
    )
  )

  it.effect("makeDirectory, recursive or not", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        yield* fs.makeDirectory(`${root}/d`)
        expect(yield* reasonOf(fs.makeDirectory(`${root}/d`))).toBe("AlreadyExists")
        yield* fs.makeDirectory(`${root}/d`, { recursive: true })
        expect(yield* reasonOf(fs.makeDirectory(`${root}/x/y`))).toBe("NotFound")
        yield* fs.makeDirectory(`${root}/x/y/z`, { recursive: true })
        expect((yield* fs.stat(`${root}/x/y/z`)).type).toBe("Directory")
        yield* fs.writeFileString(`${root}/f`, "x")
        expect(yield* reasonOf(fs.makeDirectory(`${root}/f`, { recursive: true }))).toBe("AlreadyExists")
        expect(yield* reasonOf(fs.makeDirectory(`${root}/f/g`, { recursive: true }))).toBe("BadResource")
      })
    )
  )

  it.effect("readDirectory lists children, recursively on request", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        yield* fs.makeDirectory(`${root}/d/e`, { recursive: true })
        yield* fs.writeFileString(`${root}/d/e/g`, "x")
        yield* fs.writeFileString(`${root}/b.jsonl`, "x")
        yield* fs.writeFileString(`${root}/a.jsonl`, "x")
        expect((yield* fs.readDirectory(root)).sort()).toEqual(["a.jsonl", "b.jsonl", "d"])
        expect((yield* fs.readDirectory(root, { recursive: true })).sort()).toEqual([
          "a.jsonl",
          "b.jsonl",
          "d",
          "d/e",
          "d/e/g"
        ])
        expect(yield* reasonOf(fs.readDirectory(`${root}/nope`))).toBe("NotFound")
        expect(yield* reasonOf(fs.readDirectory(`${root}/a.jsonl`))).toBe("BadResource")
      })
    )
  )

  it.effect("truncate shrinks and extends with zeros", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        yield* fs.writeFileString(`${root}/f`, "abcdef")
        yield* fs.truncate(`${root}/f`, 3)
        expect(yield* fs.readFileString(`${root}/f`)).toBe("abc")
        yield* fs.truncate(`${root}/f`, 5)
        expect([...(yield* fs.readFile(`${root}/f`))]).toEqual([97, 98, 99, 0, 0])
        yield* fs.truncate(`${root}/f`)
        expect((yield* fs.stat(`${root}/f`)).size).toBe(FileSystem.Size(0))
        expect(yield* reasonOf(fs.truncate(`${root}/nope`))).toBe("NotFound")
        expect(yield* reasonOf(fs.truncate(root))).toBe("BadResource")
      })
    )
  )

  it.effect("copyFile copies content and replaces the target", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        yield* fs.writeFileString(`${root}/a`, "content")
        yield* fs.writeFileString(`${root}/b`, "old")
        yield* fs.copyFile(`${root}/a`, `${root}/b`)
        yield* fs.writeFileString(`${root}/a`, "changed")
        expect(yield* fs.readFileString(`${root}/b`)).toBe("content")
        expect(yield* reasonOf(fs.copyFile(`${root}/nope`, `${root}/c`))).toBe("NotFound")
        expect(yield* reasonOf(fs.copyFile(root, `${root}/c`))).toBe("BadResource")
      })
    )
  )

  it.effect("makeTempDirectory and makeTempDirectoryScoped", () =>
    inTemp((fs, root) =>
      Effect.gen(function* () {
        const dir = yield* fs.makeTempDirectory({ directory: root, prefix: "sess-" })
        expect(dir.startsWith(`${root}/sess-`)).toBe(true)
        expect((yield* fs.stat(dir)).type).toBe("Directory")
        const other = yield* fs.makeTempDirectory({ directory: root, prefix: "sess-" })
        expect(other).not.toBe(dir)
        expect(yield* reasonOf(fs.makeTempDirectory({ directory: `${root}/nope` }))).toBe("NotFound")
        const scoped = yield* Effect.scoped(
          Effect.tap(fs.makeTempDirectoryScoped({ directory: root }), (d) =>
            fs.writeFileString(`${d}/x`, "x")
          )
        )
        expect(yield* fs.exists(scoped)).toBe(false)
      })
    )
  )
})

describe("MemoryFileSystem only", () => {
  it.effect("every operation completes synchronously (runSync) with no real I/O", () =>
    Effect.sync(() => {
      const program = Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        yield* fs.makeDirectory("/s/t", { recursive: true })
        yield* Effect.scoped(
          Effect.gen(function* () {
            const file = yield* fs.open("/s/t/x.tmp", { flag: "w" })
            yield* file.writeAll(text("{}"))
            yield* file.sync
          })
        )
        yield* fs.rename("/s/t/x.tmp", "/s/t/x.json")
        return yield* fs.readFileString("/s/t/x.json")
      })
      expect(Effect.runSync(Effect.provide(program, MemoryFileSystem.layer))).toBe("{}")
    })
  )

  it.effect("timestamps follow the TestClock", () =>
    Effect.gen(function* () {
      yield* TestClock.adjust("5 seconds")
      const fs = yield* FileSystem.FileSystem
      yield* fs.writeFileString("/tmp/f", "x")
      const stat = yield* fs.stat("/tmp/f")
      expect(Option.map(stat.mtime, (d) => d.getTime())).toEqual(Option.some(5000))
    }).pipe(Effect.provide(MemoryFileSystem.layer))
  )

  it.effect("makeWith seeds files and resolves relative paths against cwd", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      expect(yield* fs.readFileString("/state/sessions/sessions.json")).toBe("{}")
      expect(yield* fs.readFileString("sessions/a.jsonl")).toBe("line\n")
      expect(yield* fs.readFileString("./sessions/../sessions/a.jsonl")).toBe("line\n")
      expect(yield* MemoryFileSystem.snapshot("/state")).toEqual({
        "sessions/a.jsonl": "line\n",
        "sessions/sessions.json": "{}"
      })
    }).pipe(
      Effect.provide(
        MemoryFileSystem.layerWith({
          cwd: "/state",
          files: { "/state/sessions/sessions.json": "{}", "sessions/a.jsonl": text("line\n") }
        })
      )
    )
  )

  it.effect("seed writes through the FileSystem in context, creating directories", () =>
    Effect.gen(function* () {
      yield* MemoryFileSystem.seed({ "/a/b/c.txt": "c", "/a/d.txt": "d" })
      expect(yield* MemoryFileSystem.snapshot("/a")).toEqual({ "b/c.txt": "c", "d.txt": "d" })
    }).pipe(Effect.provide(MemoryFileSystem.layer))
  )

  it.effect("each layer build is a fresh, independent file system", () =>
    Effect.gen(function* () {
      const write = Effect.flatMap(FileSystem.FileSystem, (fs) => fs.writeFileString("/tmp/x", "1"))
      const exists = Effect.flatMap(FileSystem.FileSystem, (fs) => fs.exists("/tmp/x"))
      yield* Effect.provide(write, MemoryFileSystem.layer)
      expect(yield* Effect.provide(exists, MemoryFileSystem.layer)).toBe(false)
      const exit = yield* Effect.exit(
        Effect.provide(
          Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFile("/tmp/x")),
          MemoryFileSystem.layer
        )
      )
      expect(Exit.isFailure(exit)).toBe(true)
    })
  )
})
