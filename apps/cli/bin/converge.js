#!/usr/bin/env node
// The `converge` executable npm links at install time. It is checked in (npm links only
// bins that exist when it installs) and runs the built CLI in ../dist.
import { existsSync } from "node:fs"

const entry = new URL("../dist/bin.js", import.meta.url)
if (!existsSync(entry)) {
  process.stderr.write("converge: the CLI is not built yet; run npm run build first\n")
  process.exit(1)
}
await import(entry.href)
