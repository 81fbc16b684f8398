/**
 * The deterministic local model: a real `LanguageModel` from `@effect/ai`, and the
 * gateway's embedded default. Replies and summaries are pure functions of the prompt,
 * usage is reported like a provider's, latencies use `Effect.sleep` (so they follow
 * `TestClock`), and `LocalModelControl` scripts failures and hangs for tests.
 */
import * as AiError from "@effect/ai/AiError"
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as Prompt from "@effect/ai/Prompt"
import * as Response from "@effect/ai/Response"
import { isContextOverflow, isTransient, SUMMARY_PROMPT_PREFIX } from "@converge/domain"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"

export { isContextOverflow, isTransient, SUMMARY_PROMPT_PREFIX }

/** The kind of a scripted failure. */
export type FailureKind = "overflow" | "transient" | "error"

/** The kind of a request: a summary when a system message starts with `SUMMARY_PROMPT_PREFIX`. */
export type RequestKind = "reply" | "summary"

/** One request the local model received (failed ones included). */
export interface Call {
  readonly kind: RequestKind
  /** Clock time (epoch ms) when the request arrived. */
  readonly at: number
  readonly promptChars: number
}

/** Options of `layer` / `make`. */
export interface Options {
  readonly replyMs: number
  readonly summaryMs: number
  /** When set, a prompt over this many tokens (characters / 4) fails with a context overflow. */
  readonly contextWindow?: number
  /** How many requests `LocalModelControl.calls` remembers (default `CALL_LOG_LIMIT`). */
  readonly callLogLimit?: number
}

/** Scripts the local model in tests. */
export class LocalModelControl extends Context.Tag("@converge/testkit/LocalModelControl")<
  LocalModelControl,
  {
    /** The next `count` (default 1) reply requests fail with `kind`. */
    readonly failNext: (kind: FailureKind, count?: number) => Effect.Effect<void>
    /** The next `count` (default 1) summary requests fail with `kind`. */
    readonly failNextSummary: (kind: FailureKind, count?: number) => Effect.Effect<void>
    /** While `true`, summary requests wait (interruptibly) and only go on once it is `false` again. */
    readonly hangSummaries: (hang: boolean) => Effect.Effect<void>
    /** Changes the latencies used by requests that start from now on. */
    readonly setLatency: (latency: {
      readonly replyMs?: number
      readonly summaryMs?: number
    }) => Effect.Effect<void>
    /** The requests received so far (the last `callLogLimit`), in arrival order. */
    readonly calls: Effect.Effect<ReadonlyArray<Call>>
  }
>() {}

// ---------------------------------------------------------------------------------------
// Pure functions of the prompt
// ---------------------------------------------------------------------------------------

const stringify = (value: unknown): string => {
  if (typeof value === "string") return value
  try {
    return JSON.stringify(value) ?? ""
  } catch {
    return String(value)
  }
}

const partText = (
  part: Prompt.UserMessagePart | Prompt.AssistantMessagePart | Prompt.ToolMessagePart
): string => {
  switch (part.type) {
    case "text":
    case "reasoning":
      return part.text
    case "tool-call":
      return `${part.name}(${stringify(part.params)})`
    case "tool-result":
      return stringify(part.result)
    case "file":
      // A file counts by its name only: the local model does not read attachments.
      return part.fileName ?? ""
  }
}

/** The text of one prompt message, as the local model sees it. */
export const messageText = (message: Prompt.Message): string =>
  message.role === "system" ? message.content : message.content.map(partText).join("\n")

/** The length of `messageText(message)`, without building the text. */
const messageChars = (message: Prompt.Message): number => {
  if (message.role === "system") return message.content.length
  const parts: ReadonlyArray<Prompt.UserMessagePart | Prompt.AssistantMessagePart | Prompt.ToolMessagePart> =
    message.content
  let chars = Math.max(0, parts.length - 1)
  for (const part of parts) chars += partText(part).length
  return chars
}

/** The number of characters of all the messages of `prompt`. */
export const promptChars = (prompt: Prompt.Prompt): number => {
  let chars = 0
  for (const message of prompt.content) chars += messageChars(message)
  return chars
}

/** Whether `prompt` asks for a summary (one of its system messages starts with `SUMMARY_PROMPT_PREFIX`). */
export const isSummaryRequest = (prompt: Prompt.Prompt): boolean =>
  prompt.content.some(
    (message) => message.role === "system" && message.content.startsWith(SUMMARY_PROMPT_PREFIX)
  )

const countWords = (text: string): number => text.split(/\s+/).filter((word) => word.length > 0).length

const oneLine = (text: string): string => text.replace(/\s+/g, " ").trim()

/** The reply to `prompt`: derived from its last user message only, so it is stable across histories. */
export const replyText = (prompt: Prompt.Prompt): string => {
  let lastUser: Prompt.Message | undefined
  for (let i = prompt.content.length - 1; i >= 0 && lastUser === undefined; i--) {
    if (prompt.content[i]?.role === "user") lastUser = prompt.content[i]
  }
  const text = lastUser === undefined ? "" : oneLine(messageText(lastUser))
  const words = countWords(text)
  return `reply to: ${text.slice(0, 80)} [${words} ${words === 1 ? "word" : "words"}]`
}

const SUMMARY_MAX_CHARS = 600

/** The summary of `prompt`: its non-system messages, each cut short, the whole bounded in size. */
export const summaryText = (prompt: Prompt.Prompt): string => {
  const messages = prompt.content.filter((message) => message.role !== "system")
  const digest = messages.map((message) => `${message.role}: ${oneLine(messageText(message)).slice(0, 40)}`)
  const text = `Summary of ${messages.length} messages: ${digest.join(" | ")}`
  return text.length <= SUMMARY_MAX_CHARS ? text : `${text.slice(0, SUMMARY_MAX_CHARS - 1)}…`
}

/** Token count of `chars` characters, by the design's estimate (characters / 4, rounded up). */
export const tokensOf = (chars: number): number => Math.ceil(chars / 4)

// ---------------------------------------------------------------------------------------
// Errors, shaped like the providers' so the runner's classifiers see the same thing
// ---------------------------------------------------------------------------------------

const localRequest = {
  method: "POST",
  url: "local://converge/v1/messages",
  urlParams: [],
  hash: Option.none(),
  headers: {}
} as const

/** The failure the local model answers with for a scripted or real failure of `kind`. */
export const failure = (kind: FailureKind, method: string, detail?: string): AiError.AiError => {
  switch (kind) {
    case "overflow":
      return new AiError.HttpResponseError({
        module: "LocalModel",
        method,
        reason: "StatusCode",
        request: localRequest,
        response: { status: 400, headers: {} },
        description: `context_length_exceeded: prompt is too long${detail === undefined ? "" : `: ${detail}`}`,
        body: JSON.stringify({
          type: "error",
          error: {
            type: "invalid_request_error",
            code: "context_length_exceeded",
            message: "prompt is too long"
          }
        })
      })
    case "transient":
      return new AiError.HttpResponseError({
        module: "LocalModel",
        method,
        reason: "StatusCode",
        request: localRequest,
        response: { status: 529, headers: {} },
        description: "overloaded_error: the local model is overloaded",
        body: JSON.stringify({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })
      })
    case "error":
      return new AiError.UnknownError({
        module: "LocalModel",
        method,
        description: detail ?? "scripted failure of the local model"
      })
  }
}

// ---------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------

interface State {
  readonly replyMs: number
  readonly summaryMs: number
  readonly replyFailures: ReadonlyArray<FailureKind>
  readonly summaryFailures: ReadonlyArray<FailureKind>
}

/** How many requests `LocalModelControl.calls` remembers by default: the model is the gateway's default, so its log is bounded. */
export const CALL_LOG_LIMIT = 10_000

interface Answer {
  readonly text: string
  readonly inputTokens: number
  readonly outputTokens: number
}

/** Builds the local `LanguageModel` and its `LocalModelControl`. */
export const make = (
  options: Options
): Effect.Effect<readonly [LanguageModel.Service, Context.Tag.Service<LocalModelControl>]> =>
  Effect.gen(function* () {
    const state = yield* Ref.make<State>({
      replyMs: options.replyMs,
      summaryMs: options.summaryMs,
      replyFailures: [],
      summaryFailures: []
    })
    // Appended in place (a copy per request made a long run quadratic); the oldest are dropped in batches.
    const calls: Array<Call> = []
    const callLogLimit = Math.max(1, options.callLogLimit ?? CALL_LOG_LIMIT)
    // Open while summaries may proceed; `hangSummaries(true)` closes it.
    const summaryGate = yield* Effect.makeLatch(true)

    const answer = (prompt: Prompt.Prompt, method: string): Effect.Effect<Answer, AiError.AiError> =>
      Effect.gen(function* () {
        const kind: RequestKind = isSummaryRequest(prompt) ? "summary" : "reply"
        const chars = promptChars(prompt)
        const at = yield* Clock.currentTimeMillis
        calls.push({ kind, at, promptChars: chars })
        if (calls.length >= 2 * callLogLimit) calls.splice(0, calls.length - callLogLimit)
        const { replyMs, summaryMs } = yield* Ref.get(state)
        const latencyMs = kind === "summary" ? summaryMs : replyMs
        if (kind === "summary") yield* summaryGate.await
        // Taken after the gate, so a hung summary that gets interrupted leaves the script as it was.
        const scripted = yield* Ref.modify(state, (s): readonly [FailureKind | undefined, State] => {
          const queue = kind === "summary" ? s.summaryFailures : s.replyFailures
          if (queue.length === 0) return [undefined, s]
          const [next, ...rest] = queue
          return [
            next,
            kind === "summary"
              ? {
                  replyMs: s.replyMs,
                  summaryMs: s.summaryMs,
                  replyFailures: s.replyFailures,
                  summaryFailures: rest
                }
              : {
                  replyMs: s.replyMs,
                  summaryMs: s.summaryMs,
                  replyFailures: rest,
                  summaryFailures: s.summaryFailures
                }
          ]
        })
        if (scripted !== undefined) return yield* Effect.fail(failure(scripted, method))
        const inputTokens = tokensOf(chars)
        if (options.contextWindow !== undefined && inputTokens > options.contextWindow) {
          return yield* Effect.fail(
            failure("overflow", method, `${inputTokens} tokens > ${options.contextWindow}`)
          )
        }
        if (latencyMs > 0) yield* Effect.sleep(Duration.millis(latencyMs))
        const text = kind === "summary" ? summaryText(prompt) : replyText(prompt)
        return { text, inputTokens, outputTokens: tokensOf(text.length) }
      })

    const usageOf = (result: Answer) => ({
      inputTokens: result.inputTokens,
      outputTokens: result.outputTokens,
      totalTokens: result.inputTokens + result.outputTokens
    })

    const finish = (result: Answer): Response.FinishPartEncoded => ({
      type: "finish",
      reason: "stop",
      usage: usageOf(result)
    })

    const made = yield* LanguageModel.make({
      generateText: (request) =>
        Effect.map(
          answer(request.prompt, "generateText"),
          (result): Array<Response.PartEncoded> => [{ type: "text", text: result.text }, finish(result)]
        ),
      streamText: (request) =>
        Stream.fromIterableEffect(
          Effect.map(
            answer(request.prompt, "streamText"),
            (result): Array<Response.StreamPartEncoded> => [
              { type: "text-start", id: "local-0" },
              { type: "text-delta", id: "local-0", delta: result.text },
              { type: "text-end", id: "local-0" },
              finish(result)
            ]
          )
        )
    })

    // `generateText` answers without `LanguageModel.make`'s path: that path decodes the parts
    // through a Schema it builds on every call and opens a span, about 200 µs of a turn that
    // costs this model nothing. The parts are built with their constructors, so the response
    // is the one `make` would give; streaming and objects keep `make`'s implementation.
    const model: LanguageModel.Service = {
      generateObject: made.generateObject,
      streamText: made.streamText,
      generateText: ((options: LanguageModel.GenerateTextOptions<{}>) =>
        Effect.map(
          answer(Prompt.make(options.prompt), "generateText"),
          (result) =>
            new LanguageModel.GenerateTextResponse<{}>([
              Response.makePart("text", { text: result.text }),
              Response.makePart("finish", { reason: "stop", usage: new Response.Usage(usageOf(result)) })
            ])
        )) as LanguageModel.Service["generateText"]
    }

    const enqueue = (kind: FailureKind, count: number) =>
      Array.from({ length: Math.max(0, count) }, () => kind)

    const control = LocalModelControl.of({
      failNext: (kind, count = 1) =>
        Ref.update(state, (s) => ({ ...s, replyFailures: [...s.replyFailures, ...enqueue(kind, count)] })),
      failNextSummary: (kind, count = 1) =>
        Ref.update(state, (s) => ({
          ...s,
          summaryFailures: [...s.summaryFailures, ...enqueue(kind, count)]
        })),
      hangSummaries: (hang) => (hang ? summaryGate.close : summaryGate.open),
      setLatency: (latency) =>
        Ref.update(state, (s) => ({
          ...s,
          replyMs: latency.replyMs ?? s.replyMs,
          summaryMs: latency.summaryMs ?? s.summaryMs
        })),
      calls: Effect.sync(() => calls.slice(-callLogLimit))
    })

    return [model, control] as const
  })

/** The local model as the `LanguageModel`, with its `LocalModelControl`. */
export const layer = (options: Options): Layer.Layer<LanguageModel.LanguageModel | LocalModelControl> =>
  Layer.effectContext(
    Effect.map(make(options), ([model, control]) =>
      Context.make(LanguageModel.LanguageModel, model).pipe(Context.add(LocalModelControl, control))
    )
  )
