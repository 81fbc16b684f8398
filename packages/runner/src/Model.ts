/**
 * The model port: a turn's reply and a compaction's summary through `LanguageModel`
 * from `@effect/ai`, with provider errors classified as context overflow, transient or not.
 */
import { LanguageModel } from "@effect/ai"
import * as Prompt from "@effect/ai/Prompt"
import { Effect, Metric } from "effect"
import {
  ContextOverflow,
  Metrics,
  contentText,
  isContextOverflow,
  isTransient,
  ModelError,
  SUMMARY_PROMPT_PREFIX,
  type TranscriptEntry,
  Tracing
} from "@converge/domain"

/** A model's answer with the usage it reported. */
export interface ModelAnswer {
  readonly text: string
  readonly input: number
  readonly output: number
}

const messageOf = (u: unknown): string => {
  if (u instanceof Error) return u.message
  if (u && typeof u === "object" && "message" in u && typeof u.message === "string") return u.message
  return String(u)
}

/** Maps a provider error to the runner's typed errors. */
export const classify = (error: unknown): ContextOverflow | ModelError =>
  isContextOverflow(error)
    ? new ContextOverflow({ message: messageOf(error) })
    : new ModelError({ message: messageOf(error), transient: isTransient(error) })

// Messages are built with @effect/ai's constructors: a `Prompt` passed to `generateText` is
// used as it is, where an array of encoded messages would be decoded with Schema on every call.
const text = (t: string) => [Prompt.makePart("text", { text: t })]
const user = (t: string): Prompt.Message => Prompt.makeMessage("user", { content: text(t) })

type ContextMessage = Prompt.UserMessage | Prompt.AssistantMessage

// The message of each transcript entry, made once: every turn sends its whole context, and
// the entries are the transcript's own objects (kept while its lease is held), so later
// turns reuse the messages instead of converting the history again.
const messages = new WeakMap<object, ContextMessage | null>()

const messageOfEntry = (entry: TranscriptEntry): ContextMessage | null => {
  const known = messages.get(entry)
  if (known !== undefined) return known
  let message: ContextMessage | null = null
  if (entry.type === "message") {
    const m = (entry as { message: { role: string; content: unknown } }).message
    const body = contentText(m.content)
    if (body.length > 0) {
      message = Prompt.makeMessage(m.role === "assistant" ? "assistant" : "user", { content: text(body) })
    }
  }
  messages.set(entry, message)
  return message
}

/** The prompt messages of a context: its summary, then its messages. */
export const contextMessages = (
  summary: string | undefined,
  entries: ReadonlyArray<{ readonly entry: TranscriptEntry }>
): Array<ContextMessage> => {
  const out: Array<ContextMessage> = []
  if (summary !== undefined) {
    out.push(
      Prompt.makeMessage("user", { content: text(`The conversation so far, summarized:\n${summary}`) })
    )
  }
  for (const { entry } of entries) {
    const message = messageOfEntry(entry)
    if (message !== null) out.push(message)
  }
  return out
}

/** What a model call is for: its span's and its metrics' `purpose`. */
type Purpose = "reply" | "summary"

const errorKind = (e: ContextOverflow | ModelError): string =>
  e._tag === "ContextOverflow" ? "context_overflow" : e.transient ? "transient" : "permanent"

// One span per call: a retried call shows as one span per attempt under its parent.
const answer = (messages: ReadonlyArray<Prompt.Message>, purpose: Purpose) =>
  LanguageModel.generateText({ prompt: Prompt.fromMessages(messages) }).pipe(
    Effect.map(
      (response): ModelAnswer => ({
        text: response.text,
        input: response.usage.inputTokens ?? 0,
        output: response.usage.outputTokens ?? 0
      })
    ),
    Effect.mapError(classify),
    Effect.tapError((e) => Metric.increment(Metrics.modelErrorsBy(errorKind(e)))),
    Effect.ensuring(Metric.increment(Metrics.modelCallsBy(purpose))),
    Tracing.withSpan("converge.model.call", { attributes: { purpose } })
  )

/** Asks the model to answer the context. */
export const reply = (
  summary: string | undefined,
  entries: ReadonlyArray<{ readonly entry: TranscriptEntry }>
): Effect.Effect<ModelAnswer, ContextOverflow | ModelError, LanguageModel.LanguageModel> =>
  answer(contextMessages(summary, entries), "reply")

/** Asks the model to summarize the entries before a cut (and the previous summary). */
export const summarize = (
  previousSummary: string | undefined,
  entries: ReadonlyArray<{ readonly entry: TranscriptEntry }>,
  instructions: string | undefined
): Effect.Effect<ModelAnswer, ContextOverflow | ModelError, LanguageModel.LanguageModel> => {
  const system =
    `${SUMMARY_PROMPT_PREFIX}: keep the facts, decisions, open questions and the user's goals, ` +
    "so the conversation can continue from the summary alone." +
    (instructions ? `\nAdditional instructions: ${instructions}` : "")
  const transcript = contextMessages(previousSummary, entries)
    .map((m) => `${m.role}: ${m.content.map((p) => (p.type === "text" ? p.text : "")).join("")}`)
    .join("\n\n")
  return answer([Prompt.makeMessage("system", { content: system }), user(transcript)], "summary")
}
