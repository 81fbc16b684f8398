/**
 * `converge demo`: the story Converge exists for, in real time, in a temporary directory.
 * A turn starts over the compaction threshold, its compaction starts and outlives the
 * turn's timeout; the turn returns `timed_out`; the compaction finishes later, is counted
 * once, and `/status` converges — with a live progress line and a before/after table.
 */
import { FileSystem } from "@effect/platform"
import { Clock, Deferred, Duration, Effect, Fiber, Option, Ref, Stream } from "effect"
import { type LifecycleEvent, makeConfig, type SessionStatus } from "@converge/domain"
import { LifecycleEvents, Runner } from "@converge/runner"
import { CliError } from "./CliError.js"
import { loadRuntime } from "./Compact.js"
import { table } from "./Render.js"

/** The bounds of the demo: small enough to watch, the same code as the gateway. */
export const demoSettings = {
  model: "local",
  localReplyMs: 30,
  localSummaryMs: 3_000,
  turnTimeoutMs: 1_500,
  compactionWaitMs: 1_500,
  contextWindow: 4_000,
  reserveTokens: 1_000,
  keepRecentTokens: 600,
  drainTimeoutMs: 2_000,
  flushIntervalMs: 50
} as const

const SESSION_KEY = "demo:late-compaction"
const WARM_UP_TURNS = 4
const LOREM = "the quick brown fox jumps over the lazy dog and keeps the context growing "

const text = (label: string, chars: number): string => {
  let out = `${label}: `
  while (out.length < chars) out += LOREM
  return out.slice(0, chars)
}

const num = (n: number | null | undefined): string => (typeof n === "number" ? String(n) : "—")
const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)}s`

/** What the live line shows. */
interface Progress {
  turn: string
  compaction: string
  compactionCount: number
}

/** Writes lines, and in a terminal keeps one live progress line under them. */
const makeOutput = (live: boolean) => {
  const write = (s: string) => Effect.sync(() => void process.stdout.write(s))
  return {
    live,
    line: (s: string) => write(live ? `\r\x1b[K${s}\n` : `${s}\n`),
    progress: (s: string) => (live ? write(`\r\x1b[K${s}`) : Effect.void),
    clear: live ? write("\r\x1b[K") : Effect.void
  }
}

/** The result of a demo run: the status when the turn gave up and once it converged. */
export interface DemoResult {
  readonly timedOut: SessionStatus
  readonly converged: SessionStatus
  readonly convergedAfterMs: number
}

/** Runs the demo; fails unless the turn timed out and the late compaction was counted. */
export const demo = (options: {
  readonly live: boolean
}): Effect.Effect<DemoResult, CliError, FileSystem.FileSystem> =>
  Effect.scoped(
    Effect.gen(function* () {
      const out = makeOutput(options.live)
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs
        .makeTempDirectoryScoped({ prefix: "converge-demo-" })
        .pipe(Effect.mapError((e) => CliError.of(`cannot create a temporary directory: ${e.message}`)))
      const config = yield* makeConfig({ ...demoSettings, sessionsDir: dir }).pipe(
        Effect.mapError((e) => CliError.of(e.message))
      )
      const threshold = config.contextWindow - config.reserveTokens
      yield* out.line("converge demo: a turn times out while its compaction runs on (real time, local model)")
      yield* out.line(`  sessions directory  ${dir} (removed at the end)`)
      yield* out.line(
        `  turn timeout ${config.turnTimeoutMs / 1000} s, compaction wait ${config.compactionWaitMs / 1000} s, summary takes ${config.localSummaryMs / 1000} s, compaction above ${threshold} of ${config.contextWindow} tokens`
      )

      const story = Effect.gen(function* () {
        const runner = yield* Runner
        const events = yield* LifecycleEvents
        let warm: SessionStatus | undefined
        for (let i = 1; i <= WARM_UP_TURNS; i++) {
          const r = yield* runner.turn(SESSION_KEY, text(`warm-up ${i}`, 1_800))
          warm = r.status
        }
        const context = warm?.tokens.context ?? 0
        yield* out.line(
          `  warm-up: ${WARM_UP_TURNS} turns, context ${context} tokens, compactionCount ${warm?.compactionCount ?? 0}`
        )
        yield* out.line("")

        // The next message takes the context over the threshold, so the turn compacts first.
        const message = text(
          "the message that fills the context",
          Math.max(400, (threshold - context + 300) * 4)
        )
        const start = yield* Clock.currentTimeMillis
        const elapsed = Effect.map(Clock.currentTimeMillis, (now) => seconds(now - start))
        const progress = yield* Ref.make<Progress>({
          turn: "running",
          compaction: "idle",
          compactionCount: warm?.compactionCount ?? 0
        })
        const completed = yield* Deferred.make<number>()
        const timedOut = yield* Deferred.make<{ readonly status: SessionStatus; readonly at: number }>()
        const say = (event: string, detail: string) =>
          Effect.flatMap(elapsed, (t) => out.line(`+${t}  ${event.padEnd(20)} ${detail}`))

        const onEvent = (e: LifecycleEvent): Effect.Effect<void> => {
          switch (e._tag) {
            case "TurnStarted":
              return say(e._tag, `${e.runId}: a message of ${message.length} characters`)
            case "CompactionStarted":
              return Ref.update(progress, (p) => ({ ...p, compaction: "running" })).pipe(
                Effect.zipRight(
                  say(e._tag, `${e.compactionId}: reason ${e.reason}, tokensBefore ${e.tokensBefore}`)
                )
              )
            case "TurnFinished":
              return Ref.update(progress, (p) => ({ ...p, turn: e.outcome })).pipe(
                Effect.zipRight(
                  say(
                    e._tag,
                    `${e.runId}: ${e.outcome}${e.timeout !== undefined ? ` (timeout: ${e.timeout})` : ""}`
                  )
                ),
                // What /status says the moment the turn gave up: the view a client is left with.
                Effect.zipRight(
                  runner.status(SESSION_KEY).pipe(
                    Effect.tap((st) =>
                      say(
                        "/status",
                        `compactionCount ${st.compactionCount}, tokens ${num(st.tokens.context)}, compaction ${st.compaction.state}`
                      )
                    ),
                    Effect.flatMap((st) => Deferred.succeed(timedOut, { status: st, at: e.at })),
                    Effect.ignore
                  )
                )
              )
            case "CompactionCompleted":
              return Ref.update(progress, (p) => ({
                ...p,
                compaction: "completed",
                compactionCount: e.ordinal
              })).pipe(
                Effect.zipRight(
                  say(
                    e._tag,
                    `${e.compactionId}: ordinal ${e.ordinal}, tokens ${e.tokensBefore} → ${e.tokensAfter}`
                  )
                ),
                Effect.zipRight(
                  Effect.flatMap(Clock.currentTimeMillis, (now) => Deferred.succeed(completed, now))
                )
              )
            case "CompactionFailed":
              return Ref.update(progress, (p) => ({ ...p, compaction: `failed (${e.reason})` })).pipe(
                Effect.zipRight(say(e._tag, `${e.compactionId}: ${e.reason}: ${e.message}`))
              )
            default:
              return Effect.void
          }
        }
        const subscription = yield* events.subscribe({ sessionKey: SESSION_KEY })
        yield* Effect.forkScoped(Stream.runForEach(subscription, onEvent))
        const ticker = yield* Effect.forkScoped(
          Effect.gen(function* () {
            const spinner = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
            for (let i = 0; ; i++) {
              const p = yield* Ref.get(progress)
              const t = yield* elapsed
              yield* out.progress(
                `${spinner[i % spinner.length]} ${t}  turn: ${p.turn}  compaction: ${p.compaction}  compactionCount: ${p.compactionCount}`
              )
              yield* Effect.sleep(Duration.millis(100))
            }
          })
        )

        const result = yield* runner.turn(SESSION_KEY, message)
        yield* say(
          "turn returned",
          `${result.outcome}${result.timeout !== undefined ? ` (timeout: ${result.timeout})` : ""}, compaction ${result.compaction.state}`
        )
        const bound = Duration.seconds(8)
        const atTimeout = yield* Deferred.await(timedOut).pipe(Effect.timeoutOption(bound))
        const done = yield* Deferred.await(completed).pipe(Effect.timeoutOption(bound))
        const converged = yield* runner
          .status(SESSION_KEY)
          .pipe(Effect.mapError((e) => CliError.of(e.message)))
        yield* say(
          "/status",
          `compactionCount ${converged.compactionCount}, tokens ${num(converged.tokens.context)}${converged.tokens.fresh ? " (fresh)" : ""}, compaction ${converged.compaction.state}`
        )
        yield* Fiber.interrupt(ticker)
        yield* out.clear
        if (result.outcome !== "timed_out" || Option.isNone(atTimeout)) {
          return yield* CliError.of(
            `the demo turn was expected to time out, but it returned ${result.outcome}`
          )
        }
        const expected = (warm?.compactionCount ?? 0) + 1
        if (Option.isNone(done) || converged.compactionCount !== expected) {
          return yield* CliError.of(
            `the compaction did not converge: compactionCount ${converged.compactionCount} (expected ${expected})`
          )
        }
        return {
          timedOut: atTimeout.value.status,
          converged,
          convergedAfterMs: done.value - atTimeout.value.at
        }
      })

      const runtime = yield* loadRuntime
      const result = yield* story.pipe(
        Effect.provide(runtime.layer(config, {})),
        Effect.catchTags({
          ConfigError: (e) => Effect.fail(CliError.of(e.message)),
          StorageError: (e) => Effect.fail(CliError.of(e.message)),
          LaneFull: (e) => Effect.fail(CliError.of(e.message)),
          SessionLeased: (e) => Effect.fail(CliError.of(e.message)),
          SessionUnavailable: (e) => Effect.fail(CliError.of(e.message)),
          InvalidSessionKey: (e) => Effect.fail(CliError.of(e.message)),
          ShuttingDown: (e) => Effect.fail(CliError.of(e.message)),
          Overloaded: (e) => Effect.fail(CliError.of(e.message)),
          StorageUnavailable: (e) => Effect.fail(CliError.of(e.message))
        })
      )
      yield* out.line("")
      yield* out.line(renderDemo(result))
      return result
    })
  )

/** The before/after table and the one-line conclusion. */
export const renderDemo = (r: DemoResult): string => {
  const a = r.timedOut
  const b = r.converged
  const rows = table(
    [{ header: "" }, { header: "AT TIMEOUT", align: "right" }, { header: "CONVERGED", align: "right" }],
    [
      ["compactionCount", String(a.compactionCount), String(b.compactionCount)],
      ["tokens.context", num(a.tokens.context), num(b.tokens.context)],
      ["tokens.fresh", a.tokens.fresh ? "yes" : "no", b.tokens.fresh ? "yes" : "no"],
      ["tokens.asOfSeq", String(a.tokens.asOfSeq), String(b.tokens.asOfSeq)],
      ["compaction", a.compaction.state, b.compaction.state],
      [
        "lastCompaction",
        a.lastCompaction === undefined ? "—" : `#${a.lastCompaction.ordinal}`,
        b.lastCompaction === undefined ? "—" : `#${b.lastCompaction.ordinal}`
      ]
    ]
  )
  return `${rows}\n\nconverged ${seconds(r.convergedAfterMs)} after the turn timed out: the late compaction is counted once, and /status agrees with the transcript.`
}
