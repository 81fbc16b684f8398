import type { Options } from "tsup"

/** The build every workspace shares: ESM and `.d.ts` from `src/`, for Node 20. */
export const packageBuild = (entry: Array<string>): Options => ({
  entry,
  format: ["esm"],
  target: "node20",
  dts: true,
  sourcemap: true,
  clean: true,
  // A plain tsconfig: tsup's dts step fails on composite projects, and must resolve deps' built types.
  tsconfig: "tsconfig.build.json"
})
