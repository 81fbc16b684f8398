/**
 * Where a turn's idempotency key is recorded beyond this process. The runner keeps the keys it
 * claimed in memory (a repeat on the same runtime waits for the first result there); this port
 * is asked first, so that a repeat sent to another gateway, or after a restart, finds the first
 * `TurnResult` instead of running the turn again. The embedded default records nothing outside
 * the process: the file backend's keys live as long as the runtime, as before.
 */
import type { StorageUnavailable, TurnResult } from "@converge/domain"
import { Context, Effect, Layer } from "effect"

/** The answer to a claim: this caller runs the turn, or the turn was answered before. */
export type Claim =
  | {
      readonly _tag: "Claimed"
      /** Names this claim in `answer` and `release`: a claim taken over is not answered by its old holder. */
      readonly token: string
    }
  | {
      /**
       * Taken from a holder whose hold lapsed unanswered (its process died): that turn may
       * have been partly written, so the runner resumes it (what it wrote is not written
       * again) and records its answer under this claim.
       */
      readonly _tag: "Abandoned"
      readonly token: string
    }
  | { readonly _tag: "Answered"; readonly result: TurnResult }

export interface IdempotencyRecordService {
  /**
   * Claims `key` of `sessionKey` for a turn that holds it at most `holdMs`, or returns the first
   * turn's result. While another process holds the key unanswered this waits, until it answers or
   * its hold lapses (its owner died): then the claim is taken over. A key is remembered
   * `IDEMPOTENCY_TTL_MS` from its claim.
   */
  readonly claim: (
    sessionKey: string,
    key: string,
    holdMs: number
  ) => Effect.Effect<Claim, StorageUnavailable>
  /** Records the result of a claimed turn. */
  readonly answer: (
    sessionKey: string,
    key: string,
    token: string,
    result: TurnResult
  ) => Effect.Effect<void, StorageUnavailable>
  /** Gives a claim back without a result (the turn was refused before it ran): a repeat runs it. */
  readonly release: (
    sessionKey: string,
    key: string,
    token: string
  ) => Effect.Effect<void, StorageUnavailable>
}

const claimedHere: Claim = { _tag: "Claimed", token: "" }

/** The runner's record of idempotency keys outside its memory. */
export class IdempotencyRecord extends Context.Tag("converge/IdempotencyRecord")<
  IdempotencyRecord,
  IdempotencyRecordService
>() {
  /** Nothing outside the process: every claim is granted, the runner's memory is the record. */
  static readonly inProcess: IdempotencyRecordService = {
    claim: () => Effect.succeed(claimedHere),
    answer: () => Effect.void,
    release: () => Effect.void
  }
  static readonly layerInProcess: Layer.Layer<IdempotencyRecord> = Layer.succeed(
    IdempotencyRecord,
    IdempotencyRecord.inProcess
  )
}
