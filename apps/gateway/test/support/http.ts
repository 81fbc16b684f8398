/**
 * Small HTTP helpers for the gateway tests: JSON requests, a server-sent events reader,
 * temporary sessions directories, transcript reading, polling.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** A JSON answer. */
export interface Answer<A = unknown> {
  readonly status: number
  readonly body: A
  readonly headers: Headers
}

/** A client for one gateway, sending the token when there is one. */
export const client = (url: string, token?: string) => {
  const headers = (extra: Record<string, string> = {}): Record<string, string> => ({
    ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    ...extra
  })
  const request = async <A = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    extra: Record<string, string> = {},
    signal?: AbortSignal
  ): Promise<Answer<A>> => {
    const init: RequestInit = {
      method,
      headers: headers(body === undefined ? extra : { "content-type": "application/json", ...extra })
    }
    if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body)
    if (signal !== undefined) init.signal = signal
    const response = await fetch(`${url}${path}`, init)
    const text = await response.text()
    let parsed: unknown = text
    try {
      parsed = JSON.parse(text)
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, body: parsed as A, headers: response.headers }
  }
  return {
    url,
    request,
    get: <A = Record<string, unknown>>(path: string, extra?: Record<string, string>) =>
      request<A>("GET", path, undefined, extra),
    post: <A = Record<string, unknown>>(path: string, body?: unknown, extra?: Record<string, string>) =>
      request<A>("POST", path, body, extra),
    del: <A = Record<string, unknown>>(path: string) => request<A>("DELETE", path),
    events: (query = "") => openEvents(`${url}/v1/events${query}`, headers())
  }
}

/** One server-sent event. */
export interface SseEvent {
  readonly id?: string
  readonly event?: string
  readonly data?: string
}

/** An open `/v1/events` stream, parsed as it arrives. */
export interface EventStream {
  readonly events: Array<SseEvent>
  readonly comments: Array<string>
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>
  readonly waitFor: (
    predicate: (events: ReadonlyArray<SseEvent>) => boolean,
    timeoutMs?: number
  ) => Promise<void>
  readonly close: () => void
}

/** Opens an event stream; resolves once the server confirmed the subscription (`: connected`). */
export const openEvents = async (url: string, headers: Record<string, string>): Promise<EventStream> => {
  const controller = new AbortController()
  const response = await fetch(url, { headers, signal: controller.signal })
  if (response.status !== 200 || response.body === null) throw new Error(`events: HTTP ${response.status}`)
  const events: Array<SseEvent> = []
  const comments: Array<string> = []
  const listeners = new Set<() => void>()
  let buffer = ""
  let connected: () => void = () => {}
  const isConnected = new Promise<void>((resolve) => {
    connected = resolve
  })
  const decoder = new TextDecoder()
  const reader = response.body.getReader()
  const ended = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) return
        buffer += decoder.decode(value, { stream: true })
        let end = buffer.indexOf("\n\n")
        while (end !== -1) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          const event: Record<string, string> = {}
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) {
              comments.push(line.slice(1).trim())
              if (line.slice(1).trim() === "connected") connected()
              continue
            }
            const colon = line.indexOf(":")
            const field = line.slice(0, colon)
            const value = line.slice(colon + 1).replace(/^ /, "")
            event[field] = event[field] === undefined ? value : `${event[field]}\n${value}`
          }
          if (Object.keys(event).length > 0) events.push(event)
          end = buffer.indexOf("\n\n")
        }
        for (const l of listeners) l()
      }
    } catch {
      // aborted by close()
    } finally {
      for (const l of listeners) l()
    }
  })()
  await isConnected
  return {
    events,
    comments,
    ended,
    waitFor: (predicate, timeoutMs = 15_000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (predicate(events)) {
            listeners.delete(check)
            clearTimeout(timer)
            resolve()
          }
        }
        const timer = setTimeout(() => {
          listeners.delete(check)
          reject(new Error(`timed out waiting for events; got ${events.map((e) => e.event).join(", ")}`))
        }, timeoutMs)
        listeners.add(check)
        check()
      }),
    close: () => controller.abort()
  }
}

/** The parsed `data` of the events named `name`. */
export const dataOf = <A = Record<string, unknown>>(
  events: ReadonlyArray<SseEvent>,
  name: string
): Array<A> => events.filter((e) => e.event === name).map((e) => JSON.parse(e.data ?? "null") as A)

/** A fresh temporary directory; `removeTempDirs` deletes them. */
const temps: Array<string> = []
export const tempDir = async (prefix = "converge-gateway-") => {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  temps.push(dir)
  return dir
}
export const removeTempDirs = async () => {
  await Promise.all(temps.splice(0).map((dir) => rm(dir, { recursive: true, force: true })))
}

/** A transcript's lines after the header, parsed, with their seq (the physical line index after the header). */
export const transcript = async (
  dir: string,
  sessionId: string
): Promise<Array<Record<string, unknown> & { readonly seq: number }>> => {
  const text = await readFile(join(dir, `${sessionId}.jsonl`), "utf8")
  const lines = text.split("\n")
  if (lines.at(-1) === "") lines.pop()
  return lines.slice(1).map((line, seq) => ({ ...(JSON.parse(line) as Record<string, unknown>), seq }))
}

/** Polls `f` until it returns something other than `undefined`. */
export const waitFor = async <A>(
  f: () => Promise<A | undefined> | A | undefined,
  timeoutMs = 15_000
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await f()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error("timed out waiting")
    await new Promise((r) => setTimeout(r, 25))
  }
}

/** About 400 tokens of text. */
export const paragraph = (n: number) =>
  `${`line ${n} of the conversation, with enough words to count. `.repeat(27)}`.slice(0, 1_600)

/** Small windows: three 1 600-character turns fit, the fourth crosses the threshold (1 500 tokens). */
export const smallWindows = {
  CONVERGE_CONTEXT_WINDOW: "2000",
  CONVERGE_RESERVE_TOKENS: "500",
  CONVERGE_KEEP_RECENT_TOKENS: "200"
} as const
