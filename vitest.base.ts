import { defineProject, type UserWorkspaceConfig } from "vitest/config"

/**
 * The test project every workspace shares. Workspace packages load from `src/` through the
 * `converge-source` export condition; Vite 6+ applies `resolve.conditions` to the client
 * environment only, and tests run in the SSR (node) one, so both are set. The timeout leaves
 * room for a 2-core CI machine running every package at once (a test that passes in 2 s
 * alone can take 6 there, and the property tests run 1,000 cases each).
 */
export const packageTests = (test: UserWorkspaceConfig["test"] = {}) =>
  defineProject({
    resolve: { conditions: ["converge-source"] },
    ssr: { resolve: { conditions: ["converge-source"] } },
    test: { include: ["test/**/*.test.ts"], testTimeout: 30_000, ...test }
  })
