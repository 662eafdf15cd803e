#!/usr/bin/env node
// The r3gpu command. The TypeScript sources are compiled to dist/ by `npm run build` (scripts/setup.sh runs it).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const launcher = fileURLToPath(new URL("../dist/src/cli/launch.js", import.meta.url));
if (!existsSync(launcher)) {
  console.error("r3gpu: not built yet; run `bash scripts/setup.sh` (or `npm run build`) in the r3gpu folder first");
  process.exit(2);
}
const { launch } = await import(launcher);
await launch(fileURLToPath(import.meta.url), process.argv.slice(2));
