import { defineProject } from "vitest/config"

// Vite 6+ applies `resolve.conditions` to the client environment only; tests run in the
// SSR (node) environment, which needs the condition too to load workspace packages' src.
export default defineProject({
  resolve: { conditions: ["converge-source"] },
  ssr: { resolve: { conditions: ["converge-source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    // Room for a 2-core CI machine that runs every package at once (a test that passes in 2 s alone can take 6).
    testTimeout: 30_000
  }
})
