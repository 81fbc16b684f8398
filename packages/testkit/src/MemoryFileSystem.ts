/**
 * An in-memory `FileSystem` from `@effect/platform` that behaves like the Node one.
 *
 * Every operation runs synchronously as far as the scheduler is concerned (no real I/O,
 * no timers), so tests under `TestClock` stay deterministic (DESIGN §8). Errors are the
 * same `SystemError`s, with the same `reason`s, that `@effect/platform-node` produces.
 */
import * as PlatformError from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

/** Options of `makeWith` / `layerWith`. */
export interface Options {
  /** Files to create before the first operation (parent directories are created too). */
  readonly files?: Readonly<Record<string, string | Uint8Array>>
  /** The directory relative paths resolve against (default `/`). */
  readonly cwd?: string
}

// Node creates files and directories through the process umask; 022 is the common default.
const UMASK = 0o022
const S_IFREG = 0o100000
const S_IFDIR = 0o040000
const TMPDIR = "/tmp"

interface FileNode {
  readonly _tag: "File"
  readonly ino: number
  bytes: Uint8Array
  size: number
  mode: number
  mtime: number
  atime: number
  readonly birthtime: number
}

interface DirectoryNode {
  readonly _tag: "Directory"
  readonly ino: number
  mode: number
  mtime: number
  atime: number
  readonly birthtime: number
}

type Node = FileNode | DirectoryNode

type Lookup =
  | { readonly _tag: "Found"; readonly node: Node }
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Unreachable"; readonly reason: "NotFound" | "BadResource" }

interface OpenFlags {
  readonly read: boolean
  readonly write: boolean
  readonly create: boolean
  readonly exclusive: boolean
  readonly truncate: boolean
  readonly append: boolean
}

const openFlags: Record<FileSystem.OpenFlag, OpenFlags> = {
  r: { read: true, write: false, create: false, exclusive: false, truncate: false, append: false },
  "r+": { read: true, write: true, create: false, exclusive: false, truncate: false, append: false },
  w: { read: false, write: true, create: true, exclusive: false, truncate: true, append: false },
  wx: { read: false, write: true, create: true, exclusive: true, truncate: true, append: false },
  "w+": { read: true, write: true, create: true, exclusive: false, truncate: true, append: false },
  "wx+": { read: true, write: true, create: true, exclusive: true, truncate: true, append: false },
  a: { read: false, write: true, create: true, exclusive: false, truncate: false, append: true },
  ax: { read: false, write: true, create: true, exclusive: true, truncate: false, append: true },
  "a+": { read: true, write: true, create: true, exclusive: false, truncate: false, append: true },
  "ax+": { read: true, write: true, create: true, exclusive: true, truncate: false, append: true }
}

/** Resolves `path` against `cwd` into a normalized absolute POSIX path. */
export const resolvePath = (cwd: string, path: string): string => {
  const parts: Array<string> = []
  for (const part of (path.startsWith("/") ? path : `${cwd}/${path}`).split("/")) {
    if (part === "" || part === ".") continue
    if (part === "..") parts.pop()
    else parts.push(part)
  }
  return `/${parts.join("/")}`
}

const parentOf = (path: string): string => {
  const index = path.lastIndexOf("/")
  return index <= 0 ? "/" : path.slice(0, index)
}

const childPath = (dir: string, name: string): string => (dir === "/" ? `/${name}` : `${dir}/${name}`)

const isInside = (path: string, dir: string): boolean =>
  dir === "/" ? path !== "/" : path.startsWith(`${dir}/`)

const errno = {
  ENOENT: { reason: "NotFound", text: "no such file or directory" },
  EEXIST: { reason: "AlreadyExists", text: "file already exists" },
  EISDIR: { reason: "BadResource", text: "illegal operation on a directory" },
  ENOTDIR: { reason: "BadResource", text: "not a directory" },
  ENOTEMPTY: { reason: "Unknown", text: "directory not empty" },
  EINVAL: { reason: "Unknown", text: "invalid argument" },
  EBADF: { reason: "Unknown", text: "bad file descriptor" },
  ENOTSUP: { reason: "Unknown", text: "operation not supported by the in-memory file system" }
} as const

type Errno = keyof typeof errno

// Same shape as platform-node's handleErrnoException, message text included.
const systemError = (
  method: string,
  code: Errno,
  syscall: string,
  pathOrDescriptor: string | number,
  detail?: string
): PlatformError.SystemError =>
  new PlatformError.SystemError({
    reason: errno[code].reason,
    module: "FileSystem",
    method,
    pathOrDescriptor,
    syscall,
    description: `${code}: ${errno[code].text}, ${syscall}${detail === undefined ? "" : ` ${detail}`}`
  })

class MemoryFile implements FileSystem.File {
  readonly [FileSystem.FileTypeId]: FileSystem.FileTypeId = FileSystem.FileTypeId
  private position = 0
  closed = false

  constructor(
    readonly fd: FileSystem.File.Descriptor,
    private readonly node: Node,
    private readonly flags: OpenFlags
  ) {}

  private guard<A>(
    method: string,
    syscall: string,
    needs: "read" | "write" | "any",
    f: (node: FileNode, now: number) => A
  ): Effect.Effect<A, PlatformError.PlatformError> {
    return Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.suspend(() => {
        if (this.closed) return Effect.fail(systemError(method, "EBADF", syscall, this.fd))
        if (needs === "write" && !this.flags.write) {
          return Effect.fail(
            systemError(method, syscall === "ftruncate" ? "EINVAL" : "EBADF", syscall, this.fd)
          )
        }
        if (needs === "read" && !this.flags.read)
          return Effect.fail(systemError(method, "EBADF", syscall, this.fd))
        if (this.node._tag === "Directory")
          return Effect.fail(systemError(method, "EISDIR", syscall, this.fd))
        return Effect.succeed(f(this.node, now))
      })
    )
  }

  get stat(): Effect.Effect<FileSystem.File.Info, PlatformError.PlatformError> {
    return Effect.suspend(() =>
      this.closed
        ? Effect.fail(systemError("stat", "EBADF", "fstat", this.fd))
        : Effect.succeed(info(this.node))
    )
  }

  get sync(): Effect.Effect<void, PlatformError.PlatformError> {
    return Effect.suspend(() =>
      this.closed ? Effect.fail(systemError("sync", "EBADF", "fsync", this.fd)) : Effect.void
    )
  }

  seek(offset: FileSystem.SizeInput, from: FileSystem.SeekMode): Effect.Effect<void> {
    return Effect.sync(() => {
      this.position = from === "start" ? Number(offset) : this.position + Number(offset)
    })
  }

  read(buffer: Uint8Array): Effect.Effect<FileSystem.Size, PlatformError.PlatformError> {
    return this.guard("read", "read", "read", (node, now) => {
      const n = this.readInto(node, buffer, now)
      return FileSystem.Size(n)
    })
  }

  readAlloc(
    size: FileSystem.SizeInput
  ): Effect.Effect<Option.Option<Uint8Array>, PlatformError.PlatformError> {
    return this.guard("readAlloc", "read", "read", (node, now) => {
      const buffer = new Uint8Array(Number(size))
      const n = this.readInto(node, buffer, now)
      return n === 0 ? Option.none() : Option.some(n === buffer.length ? buffer : buffer.slice(0, n))
    })
  }

  truncate(length?: FileSystem.SizeInput): Effect.Effect<void, PlatformError.PlatformError> {
    return this.guard("truncate", "ftruncate", "write", (node, now) => {
      const len = Number(length ?? 0)
      resize(node, len, now)
      // platform-node keeps the position of an append handle, and clamps the others.
      if (!this.flags.append && this.position > len) this.position = len
    })
  }

  write(buffer: Uint8Array): Effect.Effect<FileSystem.Size, PlatformError.PlatformError> {
    return this.guard("write", "write", "write", (node, now) =>
      FileSystem.Size(this.writeFrom(node, buffer, now))
    )
  }

  writeAll(buffer: Uint8Array): Effect.Effect<void, PlatformError.PlatformError> {
    return this.guard("writeAll", "write", "write", (node, now) => {
      this.writeFrom(node, buffer, now)
    })
  }

  private readInto(node: FileNode, buffer: Uint8Array, now: number): number {
    const n = Math.max(0, Math.min(buffer.length, node.size - this.position))
    buffer.set(node.bytes.subarray(this.position, this.position + n))
    this.position += n
    node.atime = now
    return n
  }

  private writeFrom(node: FileNode, buffer: Uint8Array, now: number): number {
    const at = this.flags.append ? node.size : this.position
    writeAt(node, at, buffer, now)
    if (!this.flags.append) this.position += buffer.length
    return buffer.length
  }
}

const resize = (node: FileNode, size: number, now: number): void => {
  if (size > node.bytes.length) {
    const bytes = new Uint8Array(Math.max(size, node.bytes.length * 2, 64))
    bytes.set(node.bytes.subarray(0, node.size))
    node.bytes = bytes
  } else if (size < node.size) {
    // Zero the cut tail so that growing the file again reads zeros, as on disk.
    node.bytes.fill(0, size, node.size)
  }
  node.size = size
  node.mtime = now
}

const writeAt = (node: FileNode, at: number, data: Uint8Array, now: number): void => {
  if (at + data.length > node.size) resize(node, at + data.length, now)
  node.bytes.set(data, at)
  node.mtime = now
}

const info = (node: Node): FileSystem.File.Info => {
  const size = node._tag === "File" ? node.size : 4096
  return {
    type: node._tag,
    mtime: Option.some(new Date(node.mtime)),
    atime: Option.some(new Date(node.atime)),
    birthtime: Option.some(new Date(node.birthtime)),
    dev: 0,
    ino: Option.some(node.ino),
    mode: node.mode,
    nlink: Option.some(node._tag === "File" ? 1 : 2),
    uid: Option.some(0),
    gid: Option.some(0),
    rdev: Option.some(0),
    size: FileSystem.Size(size),
    blksize: Option.some(FileSystem.Size(4096)),
    blocks: Option.some(Math.ceil(size / 512))
  }
}

/** The mutable state behind one in-memory file system. */
class State {
  readonly nodes = new Map<string, Node>()
  private nextIno = 1
  private nextFd = 100
  private tempCounter = 0

  constructor(readonly cwd: string) {
    this.nodes.set("/", this.directory(0o755, 0))
    this.nodes.set(TMPDIR, this.directory(0o777, 0))
  }

  resolve(path: string): string {
    return resolvePath(this.cwd, path)
  }

  directory(mode: number, now: number): DirectoryNode {
    return {
      _tag: "Directory",
      ino: this.nextIno++,
      mode: S_IFDIR | (mode & 0o7777),
      mtime: now,
      atime: now,
      birthtime: now
    }
  }

  file(mode: number, now: number): FileNode {
    return {
      _tag: "File",
      ino: this.nextIno++,
      bytes: new Uint8Array(0),
      size: 0,
      mode: S_IFREG | (mode & 0o7777),
      mtime: now,
      atime: now,
      birthtime: now
    }
  }

  fd(): FileSystem.File.Descriptor {
    return FileSystem.FileDescriptor(this.nextFd++)
  }

  tempName(prefix: string): string {
    this.tempCounter += 1
    return prefix + this.tempCounter.toString(36).padStart(6, "0")
  }

  /** Like the kernel's path walk: a missing ancestor is ENOENT, a file ancestor ENOTDIR. */
  lookup(path: string): Lookup {
    const node = this.nodes.get(path)
    if (node !== undefined) return { _tag: "Found", node }
    if (path === "/") return { _tag: "Missing" }
    let ancestor = parentOf(path)
    const chain: Array<string> = []
    while (true) {
      chain.push(ancestor)
      if (ancestor === "/") break
      ancestor = parentOf(ancestor)
    }
    for (const dir of chain.reverse()) {
      const found = this.nodes.get(dir)
      if (found === undefined) return { _tag: "Unreachable", reason: "NotFound" }
      if (found._tag !== "Directory") return { _tag: "Unreachable", reason: "BadResource" }
    }
    return { _tag: "Missing" }
  }

  children(dir: string): Array<string> {
    const names: Array<string> = []
    for (const path of this.nodes.keys()) {
      if (isInside(path, dir) && parentOf(path) === dir)
        names.push(path.slice(dir === "/" ? 1 : dir.length + 1))
    }
    return names.sort()
  }

  descendants(dir: string): Array<string> {
    const paths: Array<string> = []
    for (const path of this.nodes.keys()) if (isInside(path, dir)) paths.push(path)
    return paths.sort()
  }

  touchParent(path: string, now: number): void {
    const parent = this.nodes.get(parentOf(path))
    if (parent !== undefined) parent.mtime = now
  }

  add(path: string, node: Node, now: number): void {
    this.nodes.set(path, node)
    this.touchParent(path, now)
  }

  delete(path: string, now: number): void {
    for (const inner of this.descendants(path)) this.nodes.delete(inner)
    this.nodes.delete(path)
    this.touchParent(path, now)
  }
}

type Result<A> = Effect.Effect<A, PlatformError.PlatformError>

const lookupError = (
  method: string,
  syscall: string,
  path: string,
  lookup: Lookup,
  detail: string
): PlatformError.SystemError =>
  systemError(
    method,
    lookup._tag === "Unreachable" && lookup.reason === "BadResource" ? "ENOTDIR" : "ENOENT",
    syscall,
    path,
    detail
  )

const quote = (path: string): string => `'${path}'`

const makeFileSystem = (state: State): FileSystem.FileSystem => {
  // Every operation reads the clock (TestClock under tests) and then runs synchronously.
  const op = <A>(f: (now: number) => Result<A>): Result<A> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.suspend(() => f(now)))

  const openNode = (
    method: string,
    rawPath: string,
    flags: OpenFlags,
    mode: number | undefined,
    now: number
  ): Effect.Effect<Node, PlatformError.SystemError> => {
    const path = state.resolve(rawPath)
    const found = state.lookup(path)
    if (found._tag === "Unreachable")
      return Effect.fail(lookupError(method, "open", path, found, quote(path)))
    if (found._tag === "Missing") {
      if (!flags.create) return Effect.fail(systemError(method, "ENOENT", "open", path, quote(path)))
      const node = state.file((mode ?? 0o666) & ~UMASK, now)
      state.add(path, node, now)
      return Effect.succeed(node)
    }
    const node = found.node
    if (flags.create && flags.exclusive)
      return Effect.fail(systemError(method, "EEXIST", "open", path, quote(path)))
    if (node._tag === "Directory") {
      if (flags.write) return Effect.fail(systemError(method, "EISDIR", "open", path, quote(path)))
      return Effect.succeed(node)
    }
    if (flags.truncate) resize(node, 0, now)
    return Effect.succeed(node)
  }

  const makeDirectoryAt = (path: string, mode: number, recursive: boolean, now: number): Result<void> => {
    const found = state.lookup(path)
    if (found._tag === "Found") {
      if (recursive && found.node._tag === "Directory") return Effect.void
      return Effect.fail(systemError("makeDirectory", "EEXIST", "mkdir", path, quote(path)))
    }
    if (found._tag === "Unreachable") {
      if (!recursive || found.reason === "BadResource") {
        return Effect.fail(lookupError("makeDirectory", "mkdir", path, found, quote(path)))
      }
      return Effect.flatMap(makeDirectoryAt(parentOf(path), mode, true, now), () =>
        makeDirectoryAt(path, mode, true, now)
      )
    }
    state.add(path, state.directory(mode & ~UMASK, now), now)
    return Effect.void
  }

  const makeTempDirectory = (method: string) => (options?: FileSystem.MakeTempDirectoryOptions) =>
    op((now) => {
      const directory = state.resolve(options?.directory ?? TMPDIR)
      const path = childPath(directory, state.tempName(options?.prefix ?? ""))
      const found = state.lookup(path)
      if (found._tag !== "Missing") {
        return Effect.fail(lookupError(method, "mkdtemp", path, found, quote(path)))
      }
      state.add(path, state.directory(0o700, now), now)
      return Effect.succeed(path)
    })

  const remove = (method: string) => (rawPath: string, options?: FileSystem.RemoveOptions) =>
    op((now) => {
      const path = state.resolve(rawPath)
      const found = state.lookup(path)
      if (found._tag !== "Found") {
        if (options?.force === true) return Effect.void
        return Effect.fail(lookupError(method, "lstat", path, found, quote(path)))
      }
      if (found.node._tag === "Directory" && options?.recursive !== true) {
        // Node's fs.rm reports ERR_FS_EISDIR, which platform-node maps to Unknown.
        return Effect.fail(
          new PlatformError.SystemError({
            reason: "Unknown",
            module: "FileSystem",
            method,
            pathOrDescriptor: path,
            syscall: "rm",
            description: `Path is a directory: rm returned EISDIR (is a directory) ${path}`
          })
        )
      }
      state.delete(path, now)
      return Effect.void
    })

  const open = (rawPath: string, options?: FileSystem.OpenFileOptions) =>
    Effect.acquireRelease(
      op((now) => {
        const flags = openFlags[options?.flag ?? "r"]
        return Effect.map(
          openNode("open", rawPath, flags, options?.mode, now),
          (node) => new MemoryFile(state.fd(), node, flags)
        )
      }),
      (file) =>
        Effect.sync(() => {
          file.closed = true
        })
    )

  const writeFile = (rawPath: string, data: Uint8Array, options?: FileSystem.WriteFileOptions) =>
    op((now) => {
      const flags = openFlags[options?.flag ?? "w"]
      return Effect.flatMap(openNode("writeFile", rawPath, flags, options?.mode, now), (node) => {
        if (node._tag === "Directory") {
          return Effect.fail(systemError("writeFile", "EBADF", "write", state.resolve(rawPath)))
        }
        if (!flags.write)
          return Effect.fail(systemError("writeFile", "EBADF", "write", state.resolve(rawPath)))
        writeAt(node, flags.append ? node.size : 0, data, now)
        return Effect.void
      })
    })

  const makeTempFile = (method: string) => (options?: FileSystem.MakeTempFileOptions) =>
    Effect.flatMap(makeTempDirectory(method)(options), (directory) =>
      op((now) => {
        const path = childPath(directory, state.tempName("") + (options?.suffix ?? ""))
        state.add(path, state.file(0o666 & ~UMASK, now), now)
        return Effect.succeed(path)
      })
    )

  const copyNode = (from: string, to: string, overwrite: boolean, now: number): void => {
    const node = state.nodes.get(from)
    if (node === undefined) return
    const existing = state.nodes.get(to)
    if (node._tag === "Directory") {
      if (existing === undefined) state.add(to, state.directory(node.mode, now), now)
      for (const name of state.children(from))
        copyNode(childPath(from, name), childPath(to, name), overwrite, now)
      return
    }
    if (existing !== undefined && !overwrite) return
    const copy = state.file(node.mode, now)
    writeAt(copy, 0, node.bytes.subarray(0, node.size), now)
    state.add(to, copy, now)
  }

  const unsupported = (method: string, path: string): PlatformError.SystemError =>
    systemError(method, "ENOTSUP", method, path)

  return FileSystem.make({
    access: (rawPath) =>
      op(() => {
        const path = state.resolve(rawPath)
        const found = state.lookup(path)
        // Permission bits are not checked: the tests run as an owner with full access.
        return found._tag === "Found"
          ? Effect.void
          : Effect.fail(lookupError("access", "access", path, found, quote(path)))
      }),
    copy: (rawFrom, rawTo, options) =>
      op((now) => {
        const from = state.resolve(rawFrom)
        const to = state.resolve(rawTo)
        const found = state.lookup(from)
        if (found._tag !== "Found") return Effect.fail(lookupError("copy", "lstat", from, found, quote(from)))
        const target = state.lookup(to)
        if (target._tag === "Unreachable")
          return Effect.fail(lookupError("copy", "cp", to, target, quote(to)))
        copyNode(from, to, options?.overwrite ?? false, now)
        return Effect.void
      }),
    copyFile: (rawFrom, rawTo) =>
      op((now) => {
        const from = state.resolve(rawFrom)
        const to = state.resolve(rawTo)
        const detail = `${quote(from)} -> ${quote(to)}`
        const source = state.lookup(from)
        if (source._tag !== "Found")
          return Effect.fail(lookupError("copyFile", "copyfile", from, source, detail))
        if (source.node._tag === "Directory") {
          return Effect.fail(systemError("copyFile", "EISDIR", "copyfile", from, detail))
        }
        const target = state.lookup(to)
        if (target._tag === "Unreachable")
          return Effect.fail(lookupError("copyFile", "copyfile", from, target, detail))
        if (target._tag === "Found" && target.node._tag === "Directory") {
          return Effect.fail(systemError("copyFile", "EISDIR", "copyfile", from, detail))
        }
        const copy = state.file(source.node.mode, now)
        writeAt(copy, 0, source.node.bytes.subarray(0, source.node.size), now)
        state.add(to, copy, now)
        return Effect.void
      }),
    chmod: (rawPath, mode) =>
      op((now) => {
        const path = state.resolve(rawPath)
        const found = state.lookup(path)
        if (found._tag !== "Found")
          return Effect.fail(lookupError("chmod", "chmod", path, found, quote(path)))
        found.node.mode = (found.node.mode & ~0o7777) | (mode & 0o7777)
        found.node.atime = now
        return Effect.void
      }),
    chown: (rawPath) =>
      op(() => {
        const path = state.resolve(rawPath)
        const found = state.lookup(path)
        return found._tag === "Found"
          ? Effect.void
          : Effect.fail(lookupError("chown", "chown", path, found, quote(path)))
      }),
    link: (rawFrom, rawTo) =>
      op((now) => {
        const from = state.resolve(rawFrom)
        const to = state.resolve(rawTo)
        const detail = `${quote(from)} -> ${quote(to)}`
        const source = state.lookup(from)
        if (source._tag !== "Found") return Effect.fail(lookupError("link", "link", from, source, detail))
        const target = state.lookup(to)
        if (target._tag === "Found") return Effect.fail(systemError("link", "EEXIST", "link", from, detail))
        if (target._tag === "Unreachable")
          return Effect.fail(lookupError("link", "link", from, target, detail))
        // A hard link shares the node, so writes through either name are seen by both.
        state.add(to, source.node, now)
        return Effect.void
      }),
    makeDirectory: (rawPath, options) =>
      op((now) =>
        makeDirectoryAt(state.resolve(rawPath), options?.mode ?? 0o777, options?.recursive ?? false, now)
      ),
    makeTempDirectory: makeTempDirectory("makeTempDirectory"),
    makeTempDirectoryScoped: (options) =>
      Effect.acquireRelease(makeTempDirectory("makeTempDirectoryScoped")(options), (directory) =>
        Effect.orDie(remove("makeTempDirectoryScoped")(directory, { recursive: true }))
      ),
    makeTempFile: makeTempFile("makeTempFile"),
    makeTempFileScoped: (options) =>
      Effect.acquireRelease(makeTempFile("makeTempFileScoped")(options), (file) =>
        Effect.orDie(remove("makeTempFileScoped")(parentOf(file), { recursive: true }))
      ),
    open,
    readDirectory: (rawPath, options) =>
      op(() => {
        const path = state.resolve(rawPath)
        const found = state.lookup(path)
        if (found._tag !== "Found") {
          return Effect.fail(lookupError("readDirectory", "scandir", path, found, quote(path)))
        }
        if (found.node._tag !== "Directory") {
          return Effect.fail(systemError("readDirectory", "ENOTDIR", "scandir", path, quote(path)))
        }
        if (options?.recursive !== true) return Effect.succeed(state.children(path))
        const offset = path === "/" ? 1 : path.length + 1
        return Effect.succeed(state.descendants(path).map((inner) => inner.slice(offset)))
      }),
    readFile: (rawPath) =>
      op((now) => {
        const path = state.resolve(rawPath)
        const found = state.lookup(path)
        if (found._tag !== "Found")
          return Effect.fail(lookupError("readFile", "open", path, found, quote(path)))
        if (found.node._tag === "Directory")
          return Effect.fail(systemError("readFile", "EISDIR", "read", path))
        found.node.atime = now
        return Effect.succeed(found.node.bytes.slice(0, found.node.size))
      }),
    readLink: (path) => Effect.fail(unsupported("readLink", state.resolve(path))),
    realPath: (rawPath) =>
      op(() => {
        const path = state.resolve(rawPath)
        const found = state.lookup(path)
        return found._tag === "Found"
          ? Effect.succeed(path)
          : Effect.fail(lookupError("realPath", "realpath", path, found, quote(path)))
      }),
    remove: remove("remove"),
    rename: (rawFrom, rawTo) =>
      op((now) => {
        const from = state.resolve(rawFrom)
        const to = state.resolve(rawTo)
        const detail = `${quote(from)} -> ${quote(to)}`
        const source = state.lookup(from)
        if (source._tag !== "Found") return Effect.fail(lookupError("rename", "rename", from, source, detail))
        const target = state.lookup(to)
        if (target._tag === "Unreachable")
          return Effect.fail(lookupError("rename", "rename", from, target, detail))
        if (from === to) return Effect.void
        if (source.node._tag === "Directory") {
          if (isInside(to, from)) return Effect.fail(systemError("rename", "EINVAL", "rename", from, detail))
          if (target._tag === "Found") {
            if (target.node._tag !== "Directory") {
              return Effect.fail(systemError("rename", "ENOTDIR", "rename", from, detail))
            }
            if (state.children(to).length > 0) {
              return Effect.fail(systemError("rename", "ENOTEMPTY", "rename", from, detail))
            }
          }
        } else if (target._tag === "Found" && target.node._tag === "Directory") {
          return Effect.fail(systemError("rename", "EISDIR", "rename", from, detail))
        }
        // One synchronous step: the target is replaced whole, never seen half-written.
        const moved = [from, ...state.descendants(from)].map(
          (path) => [path, state.nodes.get(path)!] as const
        )
        state.delete(from, now)
        if (target._tag === "Found") state.delete(to, now)
        for (const [path, node] of moved) state.nodes.set(to + path.slice(from.length), node)
        state.touchParent(to, now)
        return Effect.void
      }),
    stat: (rawPath) =>
      op(() => {
        const path = state.resolve(rawPath)
        const found = state.lookup(path)
        return found._tag === "Found"
          ? Effect.succeed(info(found.node))
          : Effect.fail(lookupError("stat", "stat", path, found, quote(path)))
      }),
    symlink: (from) => Effect.fail(unsupported("symlink", state.resolve(from))),
    truncate: (rawPath, length) =>
      op((now) => {
        const path = state.resolve(rawPath)
        const found = state.lookup(path)
        if (found._tag !== "Found")
          return Effect.fail(lookupError("truncate", "open", path, found, quote(path)))
        if (found.node._tag === "Directory") {
          return Effect.fail(systemError("truncate", "EISDIR", "open", path, quote(path)))
        }
        resize(found.node, Number(length ?? 0), now)
        return Effect.void
      }),
    utimes: (rawPath, atime, mtime) =>
      op(() => {
        const path = state.resolve(rawPath)
        const found = state.lookup(path)
        if (found._tag !== "Found")
          return Effect.fail(lookupError("utime", "utime", path, found, quote(path)))
        found.node.atime = typeof atime === "number" ? atime * 1000 : atime.getTime()
        found.node.mtime = typeof mtime === "number" ? mtime * 1000 : mtime.getTime()
        return Effect.void
      }),
    watch: (path) => Stream.fail(unsupported("watch", state.resolve(path))),
    writeFile
  })
}

const seedState = (state: State, files: Readonly<Record<string, string | Uint8Array>>): void => {
  const encoder = new TextEncoder()
  for (const [rawPath, content] of Object.entries(files)) {
    const path = state.resolve(rawPath)
    const missing: Array<string> = []
    for (let dir = parentOf(path); !state.nodes.has(dir); dir = parentOf(dir)) missing.push(dir)
    for (const dir of missing.reverse()) state.nodes.set(dir, state.directory(0o755, 0))
    const node = state.file(0o644, 0)
    writeAt(node, 0, typeof content === "string" ? encoder.encode(content) : content, 0)
    node.mtime = 0
    state.nodes.set(path, node)
  }
}

/** A fresh in-memory file system holding `options.files`, with `/` and `/tmp` present. */
export const makeWith = (options: Options = {}): Effect.Effect<FileSystem.FileSystem> =>
  Effect.sync(() => {
    const state = new State(resolvePath("/", options.cwd ?? "/"))
    if (options.files !== undefined) seedState(state, options.files)
    return makeFileSystem(state)
  })

/** A fresh, empty in-memory file system (only `/` and `/tmp` exist). */
export const make: Effect.Effect<FileSystem.FileSystem> = makeWith()

/** A layer providing a fresh, empty in-memory `FileSystem`. */
export const layer: Layer.Layer<FileSystem.FileSystem> = Layer.effect(FileSystem.FileSystem, make)

/** A layer providing a fresh in-memory `FileSystem` built with `options`. */
export const layerWith = (options: Options): Layer.Layer<FileSystem.FileSystem> =>
  Layer.effect(FileSystem.FileSystem, makeWith(options))

/**
 * Writes `files` through the `FileSystem` in context, creating parent directories; works
 * on any implementation (memory or Node), so fixtures can be shared by both.
 */
export const seed = (
  files: Readonly<Record<string, string | Uint8Array>>
): Effect.Effect<void, PlatformError.PlatformError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) =>
    Effect.forEach(
      Object.entries(files),
      ([path, content]) => {
        const slash = path.lastIndexOf("/")
        const dir = slash > 0 ? path.slice(0, slash) : undefined
        return Effect.zipRight(
          dir === undefined ? Effect.void : fs.makeDirectory(dir, { recursive: true }),
          typeof content === "string" ? fs.writeFileString(path, content) : fs.writeFile(path, content)
        )
      },
      { discard: true }
    )
  )

/**
 * Reads every file under `root` through the `FileSystem` in context, as UTF-8 text keyed
 * by its path relative to `root` (sorted), so tests can assert on the whole tree at once.
 */
export const snapshot = (
  root: string
): Effect.Effect<Record<string, string>, PlatformError.PlatformError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const entries = (yield* fs.readDirectory(root, { recursive: true })).sort()
    const files: Record<string, string> = {}
    for (const entry of entries) {
      const path = `${root}/${entry}`
      const stat = yield* fs.stat(path)
      if (stat.type === "File") files[entry] = yield* fs.readFileString(path)
    }
    return files
  })
