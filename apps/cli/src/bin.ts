#!/usr/bin/env node
/** The `converge` executable. */
import { NodeRuntime } from "@effect/platform-node"
import { main, teardown } from "./Cli.js"

NodeRuntime.runMain(main(process.argv), { disableErrorReporting: true, disablePrettyLogger: true, teardown })
