#!/usr/bin/env node
// The r3gpu command. The TypeScript sources are compiled to dist/ by `npm run build` (scripts/setup.sh runs it).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const main = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
if (!existsSync(main)) {
  console.error("r3gpu: not built yet; run `bash scripts/setup.sh` (or `npm run build`) in the r3gpu folder first");
  process.exit(2);
}
const { run } = await import(main);
process.exitCode = await run(process.argv.slice(2));
