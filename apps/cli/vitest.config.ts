import { defineProject } from "vitest/config"

export default defineProject({
  resolve: { conditions: ["converge-source"] },
  ssr: { resolve: { conditions: ["converge-source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    // Each test runs the built binary as a child process.
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
