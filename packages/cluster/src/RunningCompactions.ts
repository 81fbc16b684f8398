/**
 * A compaction whose runner died before its commit is not silently lost. Each gateway records
 * the compactions it runs in `converge_running_compactions` (a row at `CompactionStarted`,
 * deleted at `CompactionCompleted` or `CompactionFailed`) and renews its rows; a row not renewed
 * for `staleMs` belongs to a process that died (SIGKILL, power loss). Every gateway sweeps such
 * rows, and the one whose `DELETE … RETURNING` gets a row publishes its
 * `CompactionFailed{reason: "shutdown"}` — once, to every subscriber on the database. Nothing
 * else is needed for the lattice: the dead compaction wrote no entry (its commit is one
 * statement), so no count changes; the next turn over the threshold starts a new one.
 */
import { SqlClient } from "@effect/sql"
import { randomUUID } from "node:crypto"
import { Clock, Duration, Effect, Schedule, Stream } from "effect"
import { CompactionFailed } from "@converge/domain"
import { LifecycleEvents, trusted } from "@converge/runner"

const TABLE = "converge_running_compactions"
const NOW_MS = "(extract(epoch from clock_timestamp()) * 1000)::bigint"

/** Records this process's running compactions and publishes the failure of a dead one's. */
export const watchRunningCompactions = (options: {
  readonly staleMs: number
  /** This runner's address: a row says which runner runs the compaction (`host:port#process`). */
  readonly runnerAddress: string
}) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const events = yield* LifecycleEvents
    // The address names the runner; the suffix tells a restarted process on the same port apart.
    const owner = `${options.runnerAddress}#${randomUUID()}`
    const warn = (what: string) => (e: { readonly message: string }) =>
      Effect.logWarning(`running compactions: cannot ${what}: ${e.message}`)

    // Only this process's events: a relayed start is recorded by the process that runs it.
    const stream = yield* events.subscribe({ localOnly: true })
    yield* Effect.forkScoped(
      Stream.runForEach(stream, (event) => {
        switch (event._tag) {
          case "CompactionStarted":
            return sql
              .unsafe(
                `INSERT INTO ${TABLE} (compaction_id, session_key, session_id, generation, owner, renewed_at)
                 VALUES ($1, $2, $3, $4, $5, ${NOW_MS}) ON CONFLICT (compaction_id) DO NOTHING`,
                [event.compactionId, event.sessionKey, event.sessionId, event.generation, owner]
              )
              .pipe(Effect.asVoid, Effect.catchAll(warn("record a compaction")))
          case "CompactionCompleted":
          case "CompactionFailed":
            return sql`DELETE FROM ${sql(TABLE)} WHERE compaction_id = ${event.compactionId}`.pipe(
              Effect.asVoid,
              Effect.catchAll(warn("forget a compaction"))
            )
          default:
            return Effect.void
        }
      })
    )

    const renew = sql
      .unsafe(`UPDATE ${TABLE} SET renewed_at = ${NOW_MS} WHERE owner = $1`, [owner])
      .pipe(Effect.asVoid, Effect.catchAll(warn("renew")))
    const sweep = Effect.gen(function* () {
      const dead = yield* sql.unsafe<{
        compaction_id: string
        session_key: string
        session_id: string
        generation: number
      }>(
        `DELETE FROM ${TABLE} WHERE owner <> $1 AND renewed_at < ${NOW_MS} - $2
         RETURNING compaction_id, session_key, session_id, generation`,
        [owner, options.staleMs]
      )
      const at = yield* Clock.currentTimeMillis
      for (const row of dead) {
        yield* Effect.logWarning("a compaction's runner died before its commit: failed (shutdown)").pipe(
          Effect.annotateLogs({ sessionKey: row.session_key, compactionId: row.compaction_id })
        )
        yield* events.publish(
          new CompactionFailed(
            {
              sessionKey: row.session_key,
              sessionId: row.session_id,
              generation: Number(row.generation),
              at,
              compactionId: row.compaction_id,
              reason: "shutdown",
              message: "the runner running this compaction stopped before its commit (its process died)"
            },
            trusted
          )
        )
      }
    }).pipe(Effect.catchAll(warn("sweep")))
    const every = Duration.millis(Math.max(100, Math.floor(options.staleMs / 3)))
    yield* Effect.forkScoped(Effect.repeat(Effect.zipRight(renew, sweep), Schedule.spaced(every)))
  })
