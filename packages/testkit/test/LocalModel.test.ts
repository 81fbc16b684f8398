import * as AiError from "@effect/ai/AiError"
import * as LanguageModel from "@effect/ai/LanguageModel"
import type * as Prompt from "@effect/ai/Prompt"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Effect, Exit, Fiber, Option, Stream, TestClock } from "effect"
import {
  CALL_LOG_LIMIT,
  isContextOverflow,
  isTransient,
  LocalModel,
  LocalModelControl,
  SUMMARY_PROMPT_PREFIX
} from "../src/index.js"

const conversation: ReadonlyArray<Prompt.MessageEncoded> = [
  { role: "system", content: "You are helpful." },
  { role: "user", content: "hello there" },
  { role: "assistant", content: "reply to: hello there [2 words]" },
  { role: "user", content: "what is  two\nplus two?" }
]

const summaryPrompt: ReadonlyArray<Prompt.MessageEncoded> = [
  { role: "system", content: `${SUMMARY_PROMPT_PREFIX}. Keep decisions and open questions.` },
  ...conversation.slice(1)
]

const chars = (messages: ReadonlyArray<Prompt.MessageEncoded>) =>
  messages.reduce((sum, m) => sum + (typeof m.content === "string" ? m.content.length : 0), 0)

const reply = (prompt: ReadonlyArray<Prompt.MessageEncoded>) => LanguageModel.generateText({ prompt })

const failureOf = <A>(exit: Exit.Exit<A, AiError.AiError>) =>
  Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()

const withModel = (replyMs: number, summaryMs: number) =>
  Effect.provide(LocalModel.layer({ replyMs, summaryMs }))

describe("LocalModel", () => {
  it.effect("replies deterministically from the last user message, with usage", () =>
    Effect.gen(function* () {
      const first = yield* reply(conversation)
      const second = yield* reply(conversation)
      expect(first.text).toBe("reply to: what is two plus two? [5 words]")
      expect(second.text).toBe(first.text)
      expect(first.finishReason).toBe("stop")
      expect(first.usage.inputTokens).toBe(Math.ceil(chars(conversation) / 4))
      expect(first.usage.outputTokens).toBe(Math.ceil(first.text.length / 4))
      expect(first.usage.totalTokens).toBe((first.usage.inputTokens ?? 0) + (first.usage.outputTokens ?? 0))
      const long = yield* reply([{ role: "user", content: "x".repeat(200) }])
      expect(long.text).toBe(`reply to: ${"x".repeat(80)} [1 word]`)
    }).pipe(withModel(0, 0))
  )

  it.effect("answers a summary request with a bounded, deterministic summary", () =>
    Effect.gen(function* () {
      const control = yield* LocalModelControl
      const summary = yield* reply(summaryPrompt)
      expect(summary.text).toBe(
        "Summary of 3 messages: user: hello there | assistant: reply to: hello there [2 words] | user: what is two plus two?"
      )
      expect((yield* reply(summaryPrompt)).text).toBe(summary.text)
      const many = Array.from(
        { length: 200 },
        (_, i): Prompt.MessageEncoded => ({ role: "user", content: `m${i}` })
      )
      const big = yield* reply([{ role: "system", content: SUMMARY_PROMPT_PREFIX }, ...many])
      expect(big.text.startsWith("Summary of 200 messages: user: m0 | user: m1")).toBe(true)
      expect(big.text.length).toBeLessThanOrEqual(600)
      expect((yield* control.calls).map((c) => c.kind)).toEqual(["summary", "summary", "summary"])
    }).pipe(withModel(0, 0))
  )

  it.effect("completes synchronously when latencies are 0", () =>
    Effect.sync(() => {
      const text = Effect.runSync(Effect.map(reply(conversation), (r) => r.text).pipe(withModel(0, 0)))
      expect(text).toBe("reply to: what is two plus two? [5 words]")
    })
  )

  it.effect("honours latencies under TestClock: a 90 s summary completes at exactly 90 s", () =>
    Effect.gen(function* () {
      const replyFiber = yield* Effect.fork(reply(conversation))
      const summaryFiber = yield* Effect.fork(reply(summaryPrompt))
      yield* TestClock.adjust("19 millis")
      expect(Option.isNone(yield* Fiber.poll(replyFiber))).toBe(true)
      yield* TestClock.adjust("1 millis")
      expect((yield* Fiber.join(replyFiber)).text).toContain("reply to:")
      yield* TestClock.adjust(89_979)
      expect(Option.isNone(yield* Fiber.poll(summaryFiber))).toBe(true)
      yield* TestClock.adjust("1 millis")
      const summary = yield* Fiber.join(summaryFiber)
      expect(summary.text.startsWith("Summary of 3 messages")).toBe(true)
      expect(yield* TestClock.currentTimeMillis).toBe(90_000)
    }).pipe(withModel(20, 90_000))
  )

  it.effect("records every call with its kind, arrival time and prompt size", () =>
    Effect.gen(function* () {
      const control = yield* LocalModelControl
      yield* TestClock.adjust(5)
      yield* reply(conversation)
      yield* control.failNextSummary("error")
      yield* Effect.exit(reply(summaryPrompt))
      expect(yield* control.calls).toEqual([
        { kind: "reply", at: 5, promptChars: chars(conversation) },
        { kind: "summary", at: 5, promptChars: chars(summaryPrompt) }
      ])
    }).pipe(withModel(0, 0))
  )

  it.effect("remembers only the last callLogLimit calls, so a long-running gateway's log stays bounded", () =>
    Effect.gen(function* () {
      const control = yield* LocalModelControl
      // Five summaries first, then enough replies to push them out of the log (kept in batches).
      for (let i = 0; i < 5; i++) yield* reply(summaryPrompt)
      const short: ReadonlyArray<Prompt.MessageEncoded> = [{ role: "user", content: "x" }]
      for (let i = 0; i < 95; i++) yield* reply(short)
      const calls = yield* control.calls
      expect(calls.length).toBe(20)
      expect(calls.filter((c) => c.kind === "summary")).toEqual([])
      expect(CALL_LOG_LIMIT).toBe(10_000)
    }).pipe(Effect.provide(LocalModel.layer({ replyMs: 0, summaryMs: 0, callLogLimit: 20 })))
  )

  it.effect("setLatency changes the latency of later requests", () =>
    Effect.gen(function* () {
      const control = yield* LocalModelControl
      yield* control.setLatency({ replyMs: 1_000 })
      const fiber = yield* Effect.fork(reply(conversation))
      yield* TestClock.adjust(999)
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      yield* TestClock.adjust(1)
      yield* Fiber.join(fiber)
      yield* control.setLatency({ summaryMs: 0 })
      yield* reply(summaryPrompt)
    }).pipe(withModel(10, 50))
  )

  it.effect("failNext(overflow) fails the next replies with a context overflow, then recovers", () =>
    Effect.gen(function* () {
      const control = yield* LocalModelControl
      yield* control.failNext("overflow", 2)
      for (let i = 0; i < 2; i++) {
        const error = failureOf(yield* Effect.exit(reply(conversation)))
        expect(Option.map(error, (e) => e._tag)).toEqual(Option.some("HttpResponseError"))
        expect(
          Option.map(error, (e) => e.message.includes("context_length_exceeded: prompt is too long"))
        ).toEqual(Option.some(true))
        expect(Option.map(error, isContextOverflow)).toEqual(Option.some(true))
        expect(Option.map(error, isTransient)).toEqual(Option.some(false))
      }
      expect((yield* reply(conversation)).text).toContain("reply to:")
    }).pipe(withModel(0, 0))
  )

  it.effect("failNext(transient) and failNext(error) are told apart by the classifiers", () =>
    Effect.gen(function* () {
      const control = yield* LocalModelControl
      yield* control.failNext("transient")
      yield* control.failNext("error")
      const transient = failureOf(yield* Effect.exit(reply(conversation)))
      expect(Option.map(transient, (e) => e.message.includes("overloaded"))).toEqual(Option.some(true))
      expect(
        Option.map(transient, (e) => (e._tag === "HttpResponseError" ? e.response.status : undefined))
      ).toEqual(Option.some(529))
      expect(Option.map(transient, isTransient)).toEqual(Option.some(true))
      expect(Option.map(transient, isContextOverflow)).toEqual(Option.some(false))
      const other = failureOf(yield* Effect.exit(reply(conversation)))
      expect(Option.map(other, (e) => e._tag)).toEqual(Option.some("UnknownError"))
      expect(Option.map(other, isTransient)).toEqual(Option.some(false))
      expect(Option.map(other, isContextOverflow)).toEqual(Option.some(false))
      // Summary scripts and reply scripts are separate queues.
      yield* control.failNextSummary("overflow")
      yield* reply(conversation)
      const summaryError = failureOf(yield* Effect.exit(reply(summaryPrompt)))
      expect(Option.map(summaryError, isContextOverflow)).toEqual(Option.some(true))
    }).pipe(withModel(0, 0))
  )

  it.effect("hangSummaries keeps summaries waiting, interruptibly, while replies go on", () =>
    Effect.gen(function* () {
      const control = yield* LocalModelControl
      yield* control.hangSummaries(true)
      const hung = yield* Effect.fork(reply(summaryPrompt))
      const waiting = yield* Effect.fork(reply(summaryPrompt))
      yield* TestClock.adjust("1 hour")
      expect(Option.isNone(yield* Fiber.poll(hung))).toBe(true)
      expect((yield* reply(conversation)).text).toContain("reply to:")
      expect(Exit.isInterrupted(yield* Fiber.interrupt(hung))).toBe(true)
      // Released, the remaining summary takes its normal latency from then on.
      yield* control.hangSummaries(false)
      yield* TestClock.adjust(99)
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
      yield* TestClock.adjust(1)
      expect((yield* Fiber.join(waiting)).text.startsWith("Summary of")).toBe(true)
    }).pipe(withModel(0, 100))
  )

  it.effect("streamText streams the same text and usage", () =>
    Effect.gen(function* () {
      const parts = Chunk.toReadonlyArray(
        yield* Stream.runCollect(LanguageModel.streamText({ prompt: conversation }))
      )
      const text = parts.flatMap((p) => (p.type === "text-delta" ? [p.delta] : [])).join("")
      expect(text).toBe("reply to: what is two plus two? [5 words]")
      const finish = parts.find((p) => p.type === "finish")
      expect(finish?.type === "finish" ? finish.usage.outputTokens : undefined).toBe(
        Math.ceil(text.length / 4)
      )
    }).pipe(withModel(0, 0))
  )

  it.effect("a prompt over contextWindow fails with a context overflow", () =>
    Effect.gen(function* () {
      const error = failureOf(yield* Effect.exit(reply([{ role: "user", content: "y".repeat(401) }])))
      expect(Option.map(error, isContextOverflow)).toEqual(Option.some(true))
      expect((yield* reply([{ role: "user", content: "y".repeat(400) }])).usage.inputTokens).toBe(100)
    }).pipe(Effect.provide(LocalModel.layer({ replyMs: 0, summaryMs: 0, contextWindow: 100 })))
  )
})

const request = {
  method: "POST",
  url: "https://api.example/v1",
  urlParams: [],
  hash: Option.none(),
  headers: {}
} as const

const providerError = (status: number, body: unknown) =>
  new AiError.HttpResponseError({
    module: "Provider",
    method: "createMessage",
    reason: "StatusCode",
    request,
    response: { status, headers: {} },
    body: JSON.stringify(body)
  })

describe("error classifiers", () => {
  it("recognise OpenAI and Anthropic context overflows", () => {
    const openai = providerError(400, {
      error: {
        message: "This model's maximum context length is 128000 tokens.",
        type: "invalid_request_error",
        code: "context_length_exceeded"
      }
    })
    const anthropic = providerError(400, {
      type: "error",
      error: { type: "invalid_request_error", message: "prompt is too long: 210000 tokens > 200000 maximum" }
    })
    for (const error of [openai, anthropic, new Error("context_length_exceeded"), "prompt is too long"]) {
      expect(isContextOverflow(error)).toBe(true)
      expect(isTransient(error)).toBe(false)
    }
    expect(isContextOverflow(providerError(400, { error: { message: "bad parameter" } }))).toBe(false)
  })

  it("treat 429 / 5xx / 529 and transport errors as transient, quota and auth errors not", () => {
    for (const status of [429, 500, 502, 503, 529]) expect(isTransient(providerError(status, {}))).toBe(true)
    expect(isTransient(providerError(529, { type: "error", error: { type: "overloaded_error" } }))).toBe(true)
    expect(isTransient(providerError(401, { error: { message: "invalid api key" } }))).toBe(false)
    expect(isTransient(providerError(429, { error: { code: "insufficient_quota" } }))).toBe(false)
    expect(
      isTransient(
        new AiError.HttpRequestError({ module: "Provider", method: "send", reason: "Transport", request })
      )
    ).toBe(true)
    expect(isTransient({ status: 503, message: "Service Unavailable" })).toBe(true)
    expect(isTransient(new Error("Overloaded"))).toBe(true)
    for (const nothing of [undefined, null, 42, {}]) {
      expect(isTransient(nothing)).toBe(false)
      expect(isContextOverflow(nothing)).toBe(false)
    }
  })
})
