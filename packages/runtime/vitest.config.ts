import { defineProject } from "vitest/config"

export default defineProject({
  resolve: { conditions: ["converge-source"] },
  ssr: { resolve: { conditions: ["converge-source"] } },
  test: {
    include: ["test/**/*.test.ts"]
  }
})
