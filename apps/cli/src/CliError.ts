/**
 * How a `converge` command ends when it does not succeed: a one-line message for a person
 * and the process exit code (1 = bad input or a failure, 2 = `repair` left problems it
 * could not fix).
 */
import { Data } from "effect"

/** Exit code of bad input and failures. */
export const EXIT_ERROR = 1
/** Exit code of a `repair` that did what it could but found problems it could not fix. */
export const EXIT_UNFIXED = 2

/** A command failed; `message` is printed as one line on stderr, then the process exits with `exitCode`. */
export class CliError extends Data.TaggedError("CliError")<{
  readonly message: string
  readonly exitCode: number
}> {
  /** A failure with exit code 1. */
  static of(message: string): CliError {
    return new CliError({ message, exitCode: EXIT_ERROR })
  }
}

/** The command already said what it had to; only the exit code is left to set. */
export class ExitCode extends Data.TaggedError("ExitCode")<{ readonly code: number }> {}
