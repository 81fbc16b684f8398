import { packageTests } from "../../vitest.base.js"

// Each test runs the built binary as a child process.
export default packageTests({ testTimeout: 60_000, hookTimeout: 60_000 })
