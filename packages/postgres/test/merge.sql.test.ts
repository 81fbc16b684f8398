/**
 * The SQL merge against the pure one, on a real PostgreSQL: for random multisets of patches
 * (duplicates, resets, foreign resets normalized as the store does), applied one statement
 * at a time in any order, or all at once from concurrent connections, the row equals the
 * pure fold — owned fields, the fields Converge does not own, and the key order.
 */
import type { SessionEntry } from "@converge/domain"
import { jsonEqual, mergeEntries, normalizeForeignReset } from "@converge/store"
import { expect, layer } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Runtime } from "effect"
import * as fc from "effect/FastCheck"
import { entry, ownedView, referenceModel } from "../../store/test/arbitraries.js"
import { fromRow, mergeCallSql, type SessionRow, toRow } from "../src/sessionRow.js"
import { freshDatabaseLayer } from "./db.js"

// What the store sends: the merge function (the statement of `mergeSql`, planned once per connection).
const statement = mergeCallSql

const patch = fc.oneof(
  { weight: 4, arbitrary: entry },
  // A foreign reset (a tool that knows no generations rewrote the id), normalized on the way in.
  {
    weight: 1,
    arbitrary: fc
      .tuple(entry, fc.integer({ min: 0, max: 2 }))
      .map(([e, g]) => normalizeForeignReset({ ...e, ownedFor: "s-old" }, "s-old", g))
  },
  // Unowned fields only a patch sets, to see the patch-over-row rule.
  {
    weight: 1,
    arbitrary: fc
      .tuple(entry, fc.constantFrom("a", "b", "c"), fc.constantFrom(1, "x", null, { deep: [1, 2] }))
      .map(([e, k, v]): SessionEntry => ({ ...e, [`extra_${k}`]: v }))
  }
)

let keys = 0

const apply = (key: string, p: SessionEntry) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql.unsafe<SessionRow>(statement, toRow(key, p) as Array<unknown>), (rows) =>
      fromRow(rows[0]!)
    )
  )

const read = (key: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql<SessionRow>`SELECT * FROM converge_sessions WHERE session_key = ${key}`, (rows) =>
      fromRow(rows[0]!)
    )
  )

const permute = <A>(xs: ReadonlyArray<A>, order: ReadonlyArray<number>): Array<A> =>
  xs
    .map((x, i) => ({ x, k: order[i % order.length]! * 31 + i }))
    .sort((a, b) => a.k - b.k)
    .map((a) => a.x)

const pureFold = (xs: ReadonlyArray<SessionEntry>): SessionEntry =>
  xs.reduce((acc, p) => mergeEntries(acc, p), mergeEntries(xs[0]!, xs[0]!))

layer(freshDatabaseLayer("converge_merge"), { timeout: 60_000 })("the SQL merge is the lattice", (it) => {
  it.effect("one statement at a time, any order, duplicates included: the row is the pure fold", () =>
    Effect.flatMap(Effect.runtime<SqlClient.SqlClient>(), (rt) => {
      const run = Runtime.runPromise(rt)
      return Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            fc.array(patch, { minLength: 1, maxLength: 8 }),
            fc.array(fc.nat(), { maxLength: 6 }),
            fc.array(fc.nat(), { minLength: 16, maxLength: 16 }),
            async (patches, duplicates, order) => {
              const multiset = permute(
                [...patches, ...duplicates.map((i) => patches[i % patches.length]!)],
                order
              )
              const key = `k${keys++}`
              const row = await run(
                Effect.forEach(multiset, (p) => apply(key, p), { discard: true }).pipe(
                  Effect.zipRight(read(key))
                )
              )
              const pure = pureFold(multiset)
              expect(ownedView(row)).toEqual(referenceModel(patches))
              expect(jsonEqual(row, pure), `${JSON.stringify(row)}\n${JSON.stringify(pure)}`).toBe(true)
              expect(Object.keys(row)).toEqual(Object.keys(pure))
              // Replaying the last patch changes nothing; replaying any other leaves the owned fields.
              expect(await run(apply(key, multiset[multiset.length - 1]!))).toEqual(row)
              expect(ownedView(await run(apply(key, multiset[0]!)))).toEqual(ownedView(row))
            }
          ),
          { numRuns: 150 }
        )
      )
    })
  )

  it.effect("all patches at once from concurrent connections: the owned fields are the pure join", () =>
    Effect.flatMap(Effect.runtime<SqlClient.SqlClient>(), (rt) => {
      const run = Runtime.runPromise(rt)
      return Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.array(patch, { minLength: 2, maxLength: 8 }), async (patches) => {
            const key = `c${keys++}`
            const row = await run(
              Effect.forEach(patches, (p) => apply(key, p), { concurrency: "unbounded", discard: true }).pipe(
                Effect.zipRight(read(key))
              )
            )
            expect(ownedView(row)).toEqual(referenceModel(patches))
          }),
          { numRuns: 60 }
        )
      )
    })
  )
})
