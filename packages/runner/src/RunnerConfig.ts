/**
 * The configuration the runner services read: the bounds of DESIGN §6.
 */
import { Context, Layer } from "effect"
import type { Config } from "@converge/domain"
import { defaults } from "@converge/domain"

/** The decoded `Config` the runtime was built with. */
export class RunnerConfig extends Context.Tag("converge/RunnerConfig")<RunnerConfig, Config>() {
  /** A layer holding `config`, with the defaults filling what it leaves out. */
  static layer(config: Partial<Config> = {}): Layer.Layer<RunnerConfig> {
    return Layer.succeed(RunnerConfig, { ...defaults, ...config })
  }
}

/** Constructor options for events built from values already typed: skip re-validation on the hot path. */
export const trusted = { disableValidation: true } as const
