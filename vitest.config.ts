import { defineConfig } from "vitest/config"

// `npx vitest` at the root runs every workspace as one project each.
export default defineConfig({
  test: {
    projects: ["packages/*", "apps/*"]
  }
})
