import { describe, expect, it } from "@effect/vitest"
import { Either, ParseResult, Schema } from "effect"
import {
  CompactionId,
  makeCompactionId,
  makeRunId,
  makeSessionId,
  RunId,
  SessionId,
  SessionKey
} from "../src/index.js"

const message = <A, I>(schema: Schema.Schema<A, I>, input: unknown): string => {
  const result = Schema.decodeUnknownEither(schema)(input)
  if (Either.isRight(result)) throw new Error(`expected ${JSON.stringify(input)} to be rejected`)
  return ParseResult.TreeFormatter.formatErrorSync(result.left)
}

describe("SessionKey", () => {
  it("accepts keys of the allowed characters", () => {
    for (const key of [
      "agent:main:main",
      "agent:main:telegram:dm:4242",
      "a",
      "x".repeat(256),
      "u+1@host.example-_"
    ]) {
      expect(Schema.decodeUnknownSync(SessionKey)(key)).toBe(key)
    }
  })
  it("rejects empty, over-long and bad-character keys with a message naming the problem", () => {
    expect(message(SessionKey, "")).toContain("session key must not be empty")
    expect(message(SessionKey, "x".repeat(257))).toContain("257 characters long; at most 256")
    expect(message(SessionKey, "agent main")).toContain(`contains " "`)
    expect(message(SessionKey, "a/b")).toContain(`contains "/"`)
    expect(message(SessionKey, "ключ")).toContain("only A-Z a-z 0-9 : _ . @ + - are allowed")
    expect(message(SessionKey, 42)).toContain("Expected string")
  })
})

describe("SessionId", () => {
  it("accepts OpenClaw's UUIDs and fresh ids", () => {
    expect(Schema.decodeUnknownSync(SessionId)("6f1c2a7e-0b1d-4c3e-9a51-2f7d8e9c0a11")).toBeDefined()
    expect(Schema.decodeUnknownSync(SessionId)(makeSessionId())).toBeDefined()
  })
  it("rejects ids that could leave the sessions directory, with the reason", () => {
    expect(message(SessionId, "../x")).toContain(`must not contain "/"`)
    expect(message(SessionId, "/etc/passwd")).toContain(`must not contain "/"`)
    expect(message(SessionId, "a\\b")).toContain(`must not contain "\\"`)
    expect(message(SessionId, "")).toContain("session id must not be empty")
    expect(message(SessionId, "x".repeat(500))).toContain("500 characters long; at most 128")
    expect(message(SessionId, "..")).toContain(`must not contain ".."`)
    expect(message(SessionId, "a\0b")).toContain("NUL")
    expect(message(SessionId, ".hidden")).toContain(`must not start with "."`)
    expect(message(SessionId, "a b")).toContain("may only contain")
  })
})

describe("RunId and CompactionId", () => {
  it("fresh ids decode and differ", () => {
    const a = makeRunId()
    expect(Schema.decodeUnknownSync(RunId)(a)).toBe(a)
    expect(makeRunId()).not.toBe(a)
    const c = makeCompactionId()
    expect(Schema.decodeUnknownSync(CompactionId)(c)).toBe(c)
    expect(message(CompactionId, "")).toContain("Expected a non empty string")
  })
})
