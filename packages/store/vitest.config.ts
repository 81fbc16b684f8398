import { defineProject } from "vitest/config"

export default defineProject({
  resolve: { conditions: ["converge-source"] },
  ssr: { resolve: { conditions: ["converge-source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    // Property tests of 1,000 runs each: room for a 2-core CI machine running every package at once.
    testTimeout: 30_000
  }
})
