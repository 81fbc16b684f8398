import { defineProject } from "vitest/config"

export default defineProject({
  resolve: { conditions: ["converge-source"] },
  // Vite 6 resolves server-side (test) imports with `ssr.resolve`; workspace packages load from src.
  ssr: { resolve: { conditions: ["converge-source"] } },
  test: {
    include: ["test/**/*.test.ts"]
  }
})
