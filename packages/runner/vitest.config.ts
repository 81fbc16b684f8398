import { defineProject } from "vitest/config"

export default defineProject({
  resolve: { conditions: ["converge-source"] },
  ssr: { resolve: { conditions: ["converge-source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    // Room for a 2-core CI machine that runs every package at once (a test that passes in 2 s alone can take 6).
    testTimeout: 30_000
  }
})
