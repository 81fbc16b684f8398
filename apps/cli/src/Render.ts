/**
 * What the commands print for people: aligned plain-text tables (no colours, no box
 * drawing, so the output reads the same in a terminal, a log and a test).
 */
import type { SessionStatus } from "@converge/domain"
import type { SessionsView } from "./Offline.js"
import type { RepairReport } from "./Repair.js"

/** A column of a table: its header and which side its cells align to. */
export interface Column {
  readonly header: string
  readonly align?: "left" | "right"
}

const width = (s: string): number => [...s].length

const pad = (s: string, n: number, align: "left" | "right"): string => {
  const fill = " ".repeat(Math.max(0, n - width(s)))
  return align === "right" ? fill + s : s + fill
}

/** Renders rows under their headers, columns separated by two spaces, trailing spaces trimmed. */
export const table = (columns: ReadonlyArray<Column>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = columns.map((c, i) => Math.max(width(c.header), ...rows.map((r) => width(r[i] ?? ""))))
  const line = (cells: ReadonlyArray<string>) =>
    columns
      .map((c, i) => pad(cells[i] ?? "", widths[i] ?? 0, c.align ?? "left"))
      .join("  ")
      .trimEnd()
  return [line(columns.map((c) => c.header)), ...rows.map(line)].join("\n")
}

const num = (n: number | null | undefined): string => (typeof n === "number" ? String(n) : "—")

/** An epoch-ms time as ISO 8601 (UTC), or `—` for none. */
export const time = (ms: number | undefined): string =>
  ms === undefined || ms <= 0 || !Number.isFinite(ms) ? "—" : new Date(ms).toISOString()

/** One session, field by field. */
export const renderStatus = (s: SessionStatus): string => {
  const t = s.tokens
  const tokens = [
    `context ${num(t.context)}`,
    `window ${num(t.window)}`,
    `input ${num(t.input)}`,
    `output ${num(t.output)}`,
    t.fresh ? "fresh" : "not fresh",
    `as of seq ${t.asOfSeq}`
  ].join(", ")
  const last = s.lastCompaction
  const rows: Array<[string, string]> = [
    ["sessionKey", s.sessionKey],
    ["sessionId", s.sessionId],
    ["generation", String(s.generation)],
    ["compactionCount", String(s.compactionCount)],
    [
      "compaction",
      s.compaction.state === "idle"
        ? "idle"
        : `running ${s.compaction.compactionId ?? ""} since ${time(s.compaction.startedAt)}`.trim()
    ],
    [
      "lastCompaction",
      last === undefined
        ? "—"
        : `#${last.ordinal} ${last.compactionId} at ${time(last.at)}` +
          (last.tokensBefore !== undefined || last.tokensAfter !== undefined
            ? ` (tokens ${num(last.tokensBefore)} → ${num(last.tokensAfter)})`
            : "")
    ],
    ["tokens", tokens],
    [
      "lastRun",
      s.lastRun === undefined ? "—" : `${s.lastRun.runId} ${s.lastRun.outcome} at ${time(s.lastRun.at)}`
    ],
    ["updatedAt", time(s.updatedAt)]
  ]
  const w = Math.max(...rows.map(([k]) => k.length))
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join("\n")
}

/** Every session, one row each, and the entries that cannot be served. */
export const renderSessions = (view: SessionsView): string => {
  const out: Array<string> = []
  if (view.sessions.length === 0) out.push("no sessions")
  else
    out.push(
      table(
        [
          { header: "KEY" },
          { header: "SESSION ID" },
          { header: "GEN", align: "right" },
          { header: "COMPACTIONS", align: "right" },
          { header: "CONTEXT", align: "right" },
          { header: "WINDOW", align: "right" },
          { header: "FRESH" },
          { header: "COMPACTION" },
          { header: "UPDATED" }
        ],
        view.sessions.map((s) => [
          s.sessionKey,
          s.sessionId,
          String(s.generation),
          String(s.compactionCount),
          num(s.tokens.context),
          num(s.tokens.window),
          s.tokens.fresh ? "yes" : "no",
          s.compaction.state,
          time(s.updatedAt)
        ])
      )
    )
  for (const u of view.unservable) out.push(`cannot be served: ${u.sessionKey} (${u.problem})`)
  return out.join("\n")
}

/** The repair table and what happened to `sessions.json`. */
export const renderRepair = (r: RepairReport): string => {
  const out: Array<string> = []
  const file = `${r.sessionsDir}/sessions.json`
  if (r.unreadable !== undefined) {
    out.push(
      r.dryRun
        ? `${file} cannot be read: ${r.unreadable.problem}; repair would move it aside (sessions.json.corrupt-<time>) and rebuild it from the transcripts`
        : `${file} could not be read: ${r.unreadable.problem}; moved aside to ${r.unreadable.movedTo ?? "sessions.json.corrupt-<time>"} and rebuilt from the transcripts`
    )
  }
  out.push(
    r.sessions.length === 0
      ? "no sessions"
      : table(
          [
            { header: "KEY" },
            { header: "BEFORE", align: "right" },
            { header: "AFTER", align: "right" },
            { header: "CHANGED" },
            { header: "PROBLEMS" }
          ],
          r.sessions.map((s) => [
            s.sessionKey,
            s.before === null ? "—" : String(s.before),
            s.after === null ? "—" : String(s.after),
            s.changes.length === 0 ? "unchanged" : s.changes.join(", "),
            s.problems.length === 0 ? "—" : s.problems.join("; ")
          ])
        )
  )
  out.push("")
  if (r.dryRun) {
    const would = r.created ? "would be created" : r.wrote ? "would be rewritten" : "is up to date"
    out.push(`dry run: ${file} ${would}; nothing was written`)
  } else if (r.wrote) {
    out.push(
      `${r.created ? "created" : "wrote"} ${file}${r.backup !== undefined ? ` (backup: ${r.backup})` : ""}`
    )
  } else out.push(`${file} is up to date; nothing was written`)
  if (r.unfixed > 0) {
    out.push(
      `${r.unfixed} ${r.unfixed === 1 ? "session has" : "sessions have"} problems repair cannot fix (see PROBLEMS)`
    )
  }
  return out.join("\n")
}
