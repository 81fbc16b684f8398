/**
 * The model behind the runner, chosen by `CONVERGE_MODEL`: the local deterministic model
 * (the embedded default), OpenAI or Anthropic. Provider keys and base URLs come from the
 * providers' usual variables.
 */
import type { LanguageModel } from "@effect/ai"
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Layer, Redacted } from "effect"
import { type Config, ConfigError } from "@converge/domain"
import { LocalModel } from "@converge/testkit"

/** The provider's default model when `CONVERGE_MODEL_NAME` is not set. */
export const defaultModelNames = { openai: "gpt-4o-mini", anthropic: "claude-sonnet-4-5" } as const

const required = (env: Record<string, string | undefined>, name: string, model: string) => {
  const value = env[name]
  if (value === undefined || value === "") {
    return new ConfigError({
      variable: name,
      value: "",
      message: `CONVERGE_MODEL=${model} needs ${name} (the provider's API key)`
    })
  }
  return Redacted.make(value)
}

/** The `LanguageModel` layer of `config`, reading provider variables from `env`. */
export const modelLayer = (
  config: Config,
  env: Record<string, string | undefined>
): Layer.Layer<LanguageModel.LanguageModel, ConfigError> => {
  switch (config.model) {
    case "local":
      return LocalModel.layer({
        replyMs: config.localReplyMs,
        summaryMs: config.localSummaryMs,
        contextWindow: config.contextWindow
      })
    case "openai": {
      const apiKey = required(env, "OPENAI_API_KEY", "openai")
      if (apiKey instanceof ConfigError) return Layer.fail(apiKey)
      const apiUrl = env.OPENAI_BASE_URL
      // Provider clients load only when chosen: they cost seconds of start-up otherwise.
      return Layer.unwrapEffect(
        Effect.promise(() => import("@effect/ai-openai")).pipe(
          Effect.map(({ OpenAiClient, OpenAiLanguageModel }) =>
            OpenAiLanguageModel.layer({ model: config.modelName ?? defaultModelNames.openai }).pipe(
              Layer.provide(OpenAiClient.layer({ apiKey, ...(apiUrl ? { apiUrl } : {}) })),
              Layer.provide(NodeHttpClient.layerUndici)
            )
          )
        )
      )
    }
    case "anthropic": {
      const apiKey = required(env, "ANTHROPIC_API_KEY", "anthropic")
      if (apiKey instanceof ConfigError) return Layer.fail(apiKey)
      const apiUrl = env.ANTHROPIC_BASE_URL
      return Layer.unwrapEffect(
        Effect.promise(() => import("@effect/ai-anthropic")).pipe(
          Effect.map(({ AnthropicClient, AnthropicLanguageModel }) =>
            AnthropicLanguageModel.layer({ model: config.modelName ?? defaultModelNames.anthropic }).pipe(
              Layer.provide(AnthropicClient.layer({ apiKey, ...(apiUrl ? { apiUrl } : {}) })),
              Layer.provide(NodeHttpClient.layerUndici)
            )
          )
        )
      )
    }
  }
}
