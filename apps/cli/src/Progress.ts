/**
 * Progress on a terminal while transcripts are folded: one line on stderr, rewritten in
 * place (`n of N transcripts folded`), at most every 100 ms and once at the end. Silent when
 * stderr is not a terminal or the output is `--json`, so pipes and scripts see nothing.
 */
import { Clock, Effect } from "effect"

/** Receives `folded` of `total` as folding goes. */
export type OnProgress = (folded: number, total: number) => Effect.Effect<void>

/** The line a terminal shows. */
export const progressLine = (folded: number, total: number) =>
  `${folded} of ${total} transcript${total === 1 ? "" : "s"} folded`

/** A reporter writing to `write`; `undefined` when it should stay quiet. */
export const reporter = (options: {
  readonly tty: boolean
  readonly json: boolean
  readonly write: (text: string) => void
  readonly intervalMs?: number
}): { readonly onProgress: OnProgress; readonly finish: Effect.Effect<void> } | undefined => {
  if (!options.tty || options.json) return undefined
  const interval = options.intervalMs ?? 100
  let shownAt = Number.NEGATIVE_INFINITY
  let shown = false
  return {
    onProgress: (folded, total) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          if (folded < total && now - shownAt < interval) return
          shownAt = now
          shown = true
          // \r and "erase to end of line": the line is rewritten in place.
          options.write(`\r\x1b[K${progressLine(folded, total)}`)
        })
      ),
    finish: Effect.sync(() => {
      if (shown) options.write("\n")
    })
  }
}

/** The reporter of this process's stderr. */
export const stderrReporter = (json: boolean) =>
  reporter({ tty: process.stderr.isTTY === true, json, write: (text) => process.stderr.write(text) })

/** Runs `use` with the reporter's `onProgress` and ends its line afterwards, whatever happens. */
export const withProgress = <A, E, R>(
  json: boolean,
  use: (onProgress: OnProgress | undefined) => Effect.Effect<A, E, R>
) => {
  const r = stderrReporter(json)
  return r === undefined ? use(undefined) : use(r.onProgress).pipe(Effect.ensuring(r.finish))
}
