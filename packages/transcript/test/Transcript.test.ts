import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { foldTranscript, type SeqEntry, type Transcript } from "../src/index.js"
import {
  DM,
  fixtureCopy,
  hookedTranscriptIn,
  linesOf,
  MAIN,
  reply,
  tempDir,
  transcriptIn,
  user
} from "./helpers.js"

describe("Transcript over the OpenClaw fixture", () => {
  it.scopedLive("the fold gives the README's counts and tokens and reports the torn tail", () =>
    Effect.gen(function* () {
      const dir = yield* fixtureCopy
      const t = yield* transcriptIn(dir)
      const dm = yield* t.fold(DM)
      expect(dm.compactionIndex).toBe(4)
      expect(dm.lastCompaction).toEqual({
        id: "1002899b",
        index: 4,
        seq: 20,
        at: Date.parse("2026-10-01T09:08:36.000Z"),
        tokensBefore: 12000
      })
      expect(dm.snapshot).toEqual({ context: 12300, input: 12000, output: 300, asOfSeq: 23 })
      expect(dm.lastSeq).toBe(24)
      expect(dm.lastActivityAt).toBe(Date.parse("2026-10-01T09:10:44.000Z"))
      expect(dm.header).toEqual({ sessionId: DM, startedAt: Date.parse("2026-10-01T09:00:00.000Z") })
      expect(dm.problems.map((p) => [p.kind, p.line, p.seq])).toEqual([["torn", 27, 25]])

      const main = yield* t.fold(MAIN)
      expect(main.compactionIndex).toBe(1)
      expect(main.lastCompaction).toMatchObject({ id: "1000f778", index: 1, seq: 7, tokensBefore: 4500 })
      expect(main.snapshot).toEqual({ context: 7500, input: 7200, output: 300, asOfSeq: 12 })
      expect(main.lastSeq).toBe(13)
      expect(main.problems).toEqual([])

      const missing = yield* t.fold("c0ffee00-1111-4222-8333-444455556666")
      expect(missing.problems.map((p) => p.kind)).toEqual(["missing"])
      expect(missing.lastSeq).toBe(-1)
    })
  )

  it.scopedLive(
    "the next append truncates the torn line, continues at seq 25 and leaves every line parsing",
    () =>
      Effect.gen(function* () {
        const dir = yield* fixtureCopy
        const t = yield* transcriptIn(dir)
        const [a, b] = yield* t.append(DM, [user("question 11"), reply("answer 11", 25, 12500, 200)])
        expect([a!.seq, b!.seq]).toEqual([25, 26])
        const file = path.join(dir, `${DM}.jsonl`)
        const { lines, torn } = linesOf(file)
        expect(torn).toBeUndefined()
        const parsed = lines.map((l) => JSON.parse(l) as { id: string; parentId: string | null })
        expect(parsed.length).toBe(1 + 27)
        expect(parsed[26]!.parentId).toBe("10030557")
        expect(parsed[27]!.parentId).toBe(parsed[26]!.id)
        const f = yield* t.fold(DM)
        expect(f.lastSeq).toBe(26)
        expect(f.problems).toEqual([])
        expect(f.snapshot).toEqual({ context: 12700, input: 12500, output: 200, asOfSeq: 25 })
      })
  )
})

describe("Transcript appends", () => {
  it.scopedLive("creates the header with the sessionKey, chains parentIds and returns seqs from 0", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const t = yield* transcriptIn(dir, { cwd: "/work" })
      const first = yield* t.append("s-1", [user("hello")], { sessionKey: "agent:main:x" })
      const second = yield* t.append("s-1", [
        reply("hi", 0, 10, 2),
        { type: "custom", customType: "x", data: 1 }
      ])
      expect(first.map((a) => a.seq)).toEqual([0])
      expect(second.map((a) => a.seq)).toEqual([1, 2])
      const { lines } = linesOf(path.join(dir, "s-1.jsonl"))
      const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
      expect(parsed[0]).toMatchObject({
        type: "session",
        version: 3,
        id: "s-1",
        cwd: "/work",
        sessionKey: "agent:main:x"
      })
      expect(parsed.slice(1).map((e) => e.parentId)).toEqual([null, first[0]!.id, second[0]!.id])
      expect(parsed.slice(1).map((e) => e.id)).toEqual([first[0]!.id, second[0]!.id, second[1]!.id])
      expect(Object.keys(parsed[2]!).slice(0, 4)).toEqual(["type", "id", "parentId", "timestamp"])
      expect(parsed[2]!.promptSeq).toBe(0)
      const f = yield* t.fold("s-1")
      expect(f.header.sessionKey).toBe("agent:main:x")
      expect(f.snapshot).toEqual({ context: 12, input: 10, output: 2, asOfSeq: 0 })
      expect(f.lastSeq).toBe(2)
    })
  )

  it.scopedLive("100 fibers appending to one session: every line parses, seqs unique and contiguous", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const t = yield* transcriptIn(dir)
      const batches = yield* Effect.forEach(
        Array.from({ length: 100 }, (_, i) => i),
        (i) => t.append("busy", [user(`q${i}`), reply(`a${i}`, -1, 1, 1)]),
        { concurrency: "unbounded" }
      )
      for (const b of batches) expect(b[1]!.seq).toBe(b[0]!.seq + 1)
      const seqs = batches.flatMap((b) => b.map((a) => a.seq)).sort((x, y) => x - y)
      expect(seqs).toEqual(Array.from({ length: 200 }, (_, i) => i))
      const { lines, torn } = linesOf(path.join(dir, "busy.jsonl"))
      expect(torn).toBeUndefined()
      const parsed = lines.map((l) => JSON.parse(l) as { id: string; parentId: string | null })
      expect(parsed.length).toBe(201)
      for (let i = 2; i < parsed.length; i++) expect(parsed[i]!.parentId).toBe(parsed[i - 1]!.id)
      const bySeq = new Map(batches.flat().map((a) => [a.seq, a.id]))
      for (let seq = 0; seq < 200; seq++) expect(parsed[seq + 1]!.id).toBe(bySeq.get(seq))
    })
  )

  it.scopedLive("appends to different sessions do not wait for each other", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const gate = yield* Deferred.make<void>()
      const t = yield* hookedTranscriptIn(dir, {
        beforeSync: (file) => (file.endsWith("slow.jsonl") ? Deferred.await(gate) : Effect.void)
      })
      const slow = yield* Effect.fork(t.append("slow", [user("stuck in fsync")]))
      yield* Effect.sleep("20 millis")
      const fast = yield* t.append("fast", [user("not waiting")]).pipe(Effect.timeout("2 seconds"))
      expect(fast[0]!.seq).toBe(0)
      expect(slow.unsafePoll()).toBeNull()
      // The slow session is still serialized behind its own append.
      const second = yield* Effect.fork(t.append("slow", [user("queued")]))
      yield* Deferred.succeed(gate, undefined)
      const [a] = yield* Fiber.join(slow)
      const [b] = yield* Fiber.join(second)
      expect([a!.seq, b!.seq]).toEqual([0, 1])
    })
  )

  it.scopedLive(
    "a burst of new sessions shares directory syncs, each begun after the file it makes durable",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const log: Array<string> = []
        const t = yield* hookedTranscriptIn(dir, {
          onOpen: (file, flag) => {
            if (flag === "a") log.push(`create ${path.basename(file)}`)
          },
          beforeSync: (file) =>
            Effect.sync(() => {
              if (file === dir) log.push("dir sync")
            })
        })
        const ids = Array.from({ length: 50 }, () => crypto.randomUUID())
        yield* Effect.forEach(
          ids,
          (id) =>
            Effect.tap(t.append(id, [user("hello")]), () => Effect.sync(() => log.push(`done ${id}.jsonl`))),
          { concurrency: "unbounded", discard: true }
        )
        const syncs = log.filter((line) => line === "dir sync").length
        expect(syncs).toBeGreaterThan(0)
        expect(syncs).toBeLessThan(ids.length)
        for (const id of ids) {
          const created = log.indexOf(`create ${id}.jsonl`)
          const done = log.indexOf(`done ${id}.jsonl`)
          expect(created).toBeGreaterThanOrEqual(0)
          expect(log.slice(created, done)).toContain("dir sync")
        }
      })
  )

  it.scopedLive("a failed append (bad entry) writes nothing and the next seq does not advance", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const t = yield* transcriptIn(dir)
      yield* t.append("s", [user("one")])
      const exit = yield* Effect.exit(
        t.append("s", [user("two"), { type: "message", message: "not an object" }])
      )
      expect(Exit.isFailure(exit)).toBe(true)
      const [next] = yield* t.append("s", [user("three")])
      expect(next!.seq).toBe(1)
      expect(linesOf(path.join(dir, "s.jsonl")).lines.length).toBe(3)
    })
  )

  it.scopedLive("a session id that fails the schema is refused before any path is built", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const t = yield* transcriptIn(dir)
      for (const bad of ["../evil", "a/b", "..", "", ".hidden", "x\u0000y"]) {
        const exit = yield* Effect.exit(t.append(bad, [user("x")]))
        expect(exit).toMatchObject({ _tag: "Failure" })
        const folded = yield* Effect.either(t.fold(bad))
        expect(folded._tag).toBe("Left")
      }
      expect(fs.readdirSync(dir)).toEqual([])
      expect(fs.existsSync(path.join(dir, "..", "evil.jsonl"))).toBe(false)
    })
  )
})

describe("Transcript leases", () => {
  it.scopedLive(
    "a second runtime cannot append to a session whose lease is held, and can once it is released",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const second = yield* transcriptIn(dir)
        yield* Effect.scoped(
          Effect.gen(function* () {
            const first = yield* transcriptIn(dir)
            yield* first.append("shared", [user("from the first")])
            const refused = yield* Effect.either(second.append("shared", [user("from the second")]))
            expect(refused).toMatchObject({
              _tag: "Left",
              left: { _tag: "SessionLeased", sessionId: "shared" }
            })
            const held = yield* Effect.either(Effect.scoped(second.hold("shared")))
            expect(held).toMatchObject({ _tag: "Left", left: { _tag: "SessionLeased" } })
            // Other sessions are free, and reading never needs the lease.
            yield* second.append("other", [user("fine")])
            expect((yield* second.fold("shared")).lastSeq).toBe(0)
            const lock = JSON.parse(fs.readFileSync(path.join(dir, "shared.jsonl.lock"), "utf8")) as {
              pid: number
            }
            expect(lock.pid).toBe(process.pid)
          })
        )
        expect(fs.existsSync(path.join(dir, "shared.jsonl.lock"))).toBe(false)
        const [a] = yield* second.append("shared", [user("now mine")])
        expect(a!.seq).toBe(1)
      })
  )

  it.scopedLive(
    "a stale lease (dead pid, or not refreshed for leaseMs) is taken at once; a live one is not",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const t = yield* transcriptIn(dir)
        const now = Date.now()
        const lock = (id: string, pid: number, refreshedAt: number) =>
          fs.writeFileSync(
            path.join(dir, `${id}.jsonl.lock`),
            JSON.stringify({ pid, owner: "someone-else", acquiredAt: refreshedAt, refreshedAt })
          )
        lock("dead", 2_147_483_000, now)
        lock("old", process.pid, now - 60_000)
        lock("live", process.pid, now)
        fs.writeFileSync(path.join(dir, "garbled.jsonl.lock"), "")
        expect((yield* t.append("dead", [user("x")]))[0]!.seq).toBe(0)
        expect((yield* t.append("old", [user("x")]))[0]!.seq).toBe(0)
        const live = yield* Effect.either(t.append("live", [user("x")]))
        expect(live).toMatchObject({ _tag: "Left", left: { _tag: "SessionLeased" } })
        const garbled = yield* Effect.either(t.append("garbled", [user("x")]))
        expect(garbled).toMatchObject({ _tag: "Left", left: { _tag: "SessionLeased" } })
        expect(fs.existsSync(path.join(dir, "live.jsonl"))).toBe(false)
        const taken = JSON.parse(fs.readFileSync(path.join(dir, "dead.jsonl.lock"), "utf8")) as {
          owner: string
        }
        expect(taken.owner).not.toBe("someone-else")
      })
  )

  it.scopedLive(
    "the lease is refreshed while active, released when idle, and a lost lease writes nothing",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const t = yield* transcriptIn(dir, { leaseMs: 150, idleMs: 400 })
        const lockFile = path.join(dir, "s.jsonl.lock")
        yield* t.append("s", [user("x")])
        const first = yield* leaseRecord(lockFile)
        yield* Effect.sleep("200 millis")
        const later = yield* leaseRecord(lockFile)
        expect(later.refreshedAt).toBeGreaterThan(first.refreshedAt)
        yield* Effect.sleep("500 millis")
        expect(fs.existsSync(lockFile)).toBe(false)
        // Taken again on the next append; then stolen by another owner: this one stops writing.
        yield* t.append("s", [user("y")])
        fs.writeFileSync(
          lockFile,
          JSON.stringify({
            pid: process.pid,
            owner: "thief",
            acquiredAt: Date.now(),
            refreshedAt: Date.now() + 60_000
          })
        )
        yield* Effect.sleep("120 millis")
        const refused = yield* Effect.either(t.append("s", [user("z")]))
        expect(refused).toMatchObject({ _tag: "Left", left: { _tag: "SessionLeased" } })
        expect(linesOf(path.join(dir, "s.jsonl")).lines.length).toBe(3)
      })
  )
})

/** The lease record in `file`; a refresh rewrites it in place, so a read may meet it half written: read again. */
const leaseRecord = (file: string) =>
  Effect.gen(function* () {
    for (let attempt = 0; ; attempt++) {
      try {
        return JSON.parse(fs.readFileSync(file, "utf8")) as { refreshedAt: number }
      } catch (e) {
        if (!(e instanceof SyntaxError) || attempt >= 20) throw e
      }
      yield* Effect.sleep("1 millis")
    }
  })

const turn = (t: Transcript, sessionId: string, n: number) =>
  Effect.forEach(
    Array.from({ length: n }, (_, i) => i),
    (i) =>
      Effect.flatMap(t.append(sessionId, [user(`question ${i} ${"lorem ".repeat(20)}`)]), ([u]) =>
        t.append(sessionId, [reply(`answer ${i} ${"ipsum ".repeat(30)}`, u!.seq, 100 * (i + 1), 50)])
      ),
    { discard: true }
  )

describe("Transcript compaction append", () => {
  it.scopedLive(
    "is idempotent by compactionId, also across runtimes, and builds over the entries since the cut",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const seen: Array<ReadonlyArray<number>> = []
        const request = (firstKeptEntryId: string) => ({
          compactionId: "cmp_1",
          firstKeptEntryId,
          build: (entries: ReadonlyArray<SeqEntry>) => {
            seen.push(entries.map((e) => e.seq))
            return { summary: "the first three turns", tokensBefore: 900, tokensAfter: 40 + entries.length }
          }
        })
        const firstKept = yield* Effect.scoped(
          Effect.gen(function* () {
            const t = yield* transcriptIn(dir)
            yield* turn(t, "c", 3)
            const context = yield* t.buildContext("c")
            const keep = context.entries[4]!.entry.id as string
            const a = yield* t.appendCompaction("c", request(keep))
            expect(a).toMatchObject({ seq: 6, index: 1, created: true })
            expect(a.entry).toMatchObject({
              type: "compaction",
              compactionId: "cmp_1",
              tokensAfter: 42,
              firstKeptEntryId: keep
            })
            const again = yield* t.appendCompaction("c", request(keep))
            expect(again).toEqual({ ...a, created: false })
            return keep
          })
        )
        expect(seen).toEqual([[4, 5]])
        const t2 = yield* transcriptIn(dir)
        const third = yield* t2.appendCompaction("c", request(firstKept))
        expect(third).toMatchObject({ seq: 6, index: 1, created: false })
        expect(seen.length).toBe(1)
        const f = yield* t2.fold("c")
        expect(f.compactionIndex).toBe(1)
        expect(f.lastCompaction).toMatchObject({
          id: "cmp_1",
          index: 1,
          seq: 6,
          tokensBefore: 900,
          tokensAfter: 42
        })
        expect(f.snapshot).toEqual({ context: 42, asOfSeq: 6 })
        const context = yield* t2.buildContext("c")
        expect(context.summary).toBe("the first three turns")
        expect(context.entries.map((e) => e.seq)).toEqual([4, 5])
      })
  )

  it.scopedLive("a compaction another tool wrote without compactionId is found by its id", () =>
    Effect.gen(function* () {
      const dir = yield* fixtureCopy
      const t = yield* transcriptIn(dir)
      const found = yield* t.appendCompaction(DM, {
        compactionId: "10015445",
        firstKeptEntryId: "1002e668",
        build: () => ({ summary: "never written" })
      })
      expect(found).toMatchObject({
        seq: 10,
        index: 2,
        created: false,
        entry: { summary: expect.stringContaining("Summary #2") }
      })
      const next = yield* t.appendCompaction(DM, {
        compactionId: "cmp_new",
        firstKeptEntryId: "1002e668",
        build: (entries) => ({ summary: "#5", tokensBefore: 12300, tokensAfter: entries.length })
      })
      expect(next).toMatchObject({ seq: 25, index: 5, created: true })
      const f = yield* t.fold(DM)
      expect(f.compactionIndex).toBe(5)
      expect(f.snapshot).toEqual({ context: 2, asOfSeq: 25 })
      expect(f.problems).toEqual([])
    })
  )

  it.scopedLive(
    "build runs inside the append lock: tokensAfter counts everything appended before the entry",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const t = yield* transcriptIn(dir)
        yield* turn(t, "race", 2)
        const keep = (yield* t.buildContext("race")).entries[2]!.entry.id as string
        const racing = yield* Effect.fork(
          Effect.forEach(
            Array.from({ length: 20 }, (_, i) => i),
            (i) => t.append("race", [user(`late ${i}`)]),
            {
              concurrency: "unbounded"
            }
          )
        )
        const c = yield* t.appendCompaction("race", {
          compactionId: "cmp_race",
          firstKeptEntryId: keep,
          build: (entries) => ({ summary: "s", tokensAfter: entries.length })
        })
        yield* Fiber.join(racing)
        const read = yield* t.read("race")
        const between = read.entries.filter((e) => e.seq >= 2 && e.seq < c.seq && e.entry.type === "message")
        expect(c.entry.tokensAfter).toBe(between.length)
      })
  )

  it.scopedLive("fails with StorageError when the cut is not in the context, and writes nothing", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const t = yield* transcriptIn(dir)
      yield* turn(t, "x", 1)
      const exit = yield* Effect.either(
        t.appendCompaction("x", {
          compactionId: "c",
          firstKeptEntryId: "nope",
          build: () => ({ summary: "s" })
        })
      )
      expect(exit).toMatchObject({ _tag: "Left", left: { _tag: "StorageError" } })
      expect((yield* t.fold("x")).compactionIndex).toBe(0)
    })
  )
})

describe("Transcript reading", () => {
  it.scopedLive(
    "accepts a BOM and CRLF, keeps unknown types, reports a malformed middle line and reads on",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const lines = [
          JSON.stringify({
            type: "session",
            version: 3,
            id: "crlf",
            timestamp: "2026-01-01T00:00:00.000Z",
            cwd: "/"
          }),
          JSON.stringify({
            type: "message",
            id: "a",
            parentId: null,
            timestamp: "2026-01-01T00:00:01.000Z",
            message: { role: "user", content: "hi" }
          }),
          "{ this is not json",
          JSON.stringify({
            type: "branch_summary",
            id: "b",
            parentId: "a",
            fromId: "a",
            summary: "elsewhere",
            日本: 1
          }),
          JSON.stringify({
            type: "message",
            id: "c",
            parentId: "b",
            timestamp: "2026-01-01T00:00:03.000Z",
            message: { role: "assistant", content: "yo", usage: { input: 7, output: 3 } }
          })
        ]
        fs.writeFileSync(path.join(dir, "crlf.jsonl"), `\uFEFF${lines.join("\r\n")}\r\n`)
        const t = yield* transcriptIn(dir)
        const read = yield* t.read("crlf")
        expect(read.header?.id).toBe("crlf")
        expect(read.entries.map((e) => [e.seq, e.entry.type])).toEqual([
          [0, "message"],
          [2, "branch_summary"],
          [3, "message"]
        ])
        expect(read.entries[1]!.entry).toEqual(JSON.parse(lines[3]!))
        expect(read.problems).toMatchObject([{ kind: "malformed", line: 3, seq: 1 }])
        const f = yield* t.fold("crlf")
        expect(f.lastSeq).toBe(3)
        expect(f.snapshot).toEqual({ context: 10, input: 7, output: 3, asOfSeq: 0 })
        expect(f.problems).toMatchObject([{ kind: "malformed", line: 3, seq: 1 }])
        const [next] = yield* t.append("crlf", [user("more")])
        expect(next!.seq).toBe(4)
        expect((yield* t.read("crlf")).entries.at(-1)!.entry).toMatchObject({ parentId: "c" })
      })
  )

  it.scopedLive(
    "buildContext follows pi: latest summary, kept entries, everything after; usage-based tokens",
    () =>
      Effect.gen(function* () {
        const dir = yield* fixtureCopy
        const t = yield* transcriptIn(dir)
        const context = yield* t.buildContext(DM)
        expect(context.summary).toContain("Summary #4")
        expect(context.entries.map((e) => e.seq)).toEqual([18, 19, 21, 22, 23, 24])
        expect(context.lastSeq).toBe(24)
        expect(context.tokens).toBe(12300)
        const empty = yield* t.buildContext("nothing-here")
        expect(empty).toEqual({ entries: [], tokens: 0, lastSeq: -1 })
      })
  )

  it.scopedLive("list gives every .jsonl, including ids that fail the schema; exists checks one", () =>
    Effect.gen(function* () {
      const dir = yield* fixtureCopy
      fs.writeFileSync(path.join(dir, "bad..id.jsonl"), "")
      fs.writeFileSync(path.join(dir, `${MAIN}.jsonl.lock`), "")
      const t = yield* transcriptIn(dir)
      expect([...(yield* t.list)].sort()).toEqual([DM, MAIN, "bad..id"].sort())
      expect(yield* t.exists(MAIN)).toBe(true)
      expect(yield* t.exists("c0ffee00-1111-4222-8333-444455556666")).toBe(false)
    })
  )
})

describe("Transcript resume", () => {
  it.scopedLive("a consistent session costs a read of its tail; the resumed fold equals the whole fold", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      yield* Effect.scoped(
        Effect.gen(function* () {
          const t = yield* transcriptIn(dir, { resumeMinBytes: 1024 })
          yield* turn(t, "long", 40)
          yield* t.appendCompaction("long", {
            compactionId: "cmp",
            firstKeptEntryId: (yield* t.buildContext("long")).entries[70]!.entry.id as string,
            build: (e) => ({ summary: "sum", tokensAfter: e.length })
          })
          yield* turn(t, "long", 2)
        })
      )
      const file = path.join(dir, "long.jsonl")
      expect(
        JSON.parse(fs.readFileSync(path.join(dir, "transcripts.resume.json"), "utf8")).sessions
      ).toHaveProperty("long")
      const whole = foldTranscript("long", fs.readFileSync(file, "utf8"))
      const size = fs.statSync(file).size
      let read = 0
      const t = yield* hookedTranscriptIn(dir, {
        onRead: (f, n) => {
          if (f === file) read += n
        }
      })
      const resumed = yield* t.fold("long")
      expect(resumed).toEqual(whole)
      expect(read).toBeLessThan(1024)
      expect(size).toBeGreaterThan(20_000)

      // More lines appended by someone else: only they are read.
      fs.appendFileSync(
        file,
        `${JSON.stringify({ type: "custom", id: "zz", parentId: null, timestamp: "2026-01-01T00:00:00.000Z" })}\n`
      )
      read = 0
      expect((yield* t.fold("long")).lastSeq).toBe(whole.lastSeq + 1)
      expect(read).toBeLessThan(2048)
    })
  )

  it.scopedLive(
    "a file rewritten behind the resume state (shorter, or another line at the offset) is folded whole",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const file = path.join(dir, "rw.jsonl")
        yield* Effect.scoped(
          Effect.gen(function* () {
            const t = yield* transcriptIn(dir, { resumeMinBytes: 1 })
            yield* turn(t, "rw", 10)
          })
        )
        const original = fs.readFileSync(file, "utf8").split("\n")
        // Same length, another last line: a rewrite that kept the size.
        const last = original[original.length - 2]!
        const changed = last
          .replace('"input":1000', '"input":9000')
          .replace('"totalTokens":1050', '"totalTokens":9050')
        expect(changed.length).toBe(last.length)
        expect(changed).not.toBe(last)
        fs.writeFileSync(file, [...original.slice(0, -2), changed, ""].join("\n"))
        const t = yield* transcriptIn(dir, { resumeMinBytes: 1 })
        const rewritten = yield* t.fold("rw")
        expect(rewritten.snapshot?.context).toBe(9050)
        expect(rewritten).toEqual(foldTranscript("rw", fs.readFileSync(file, "utf8")))
        // Shorter: OpenClaw rewrote it after a reset.
        fs.writeFileSync(file, [...original.slice(0, 5), ""].join("\n"))
        const t3 = yield* transcriptIn(dir, { resumeMinBytes: 1 })
        const shorter = yield* t3.fold("rw")
        expect(shorter.lastSeq).toBe(3)
        expect(shorter).toEqual(foldTranscript("rw", fs.readFileSync(file, "utf8")))
      })
  )
})
