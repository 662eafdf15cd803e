// The build's kernel check: every shader in shaders/ (but the libraries in shaders/lib/) against its declaration
// in src/ (bindings, uniform fields, overrides, workgroup size, flags), after the TypeScript build. A mismatch fails
// the build with one line per problem; so does a shader that no declaration uses.
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const load = (path) => import(pathToFileURL(join(root, "dist", path)).href);
// Importing these modules registers every kernel declaration of the engine and the bench.
await load("src/ops/index.js");
await load("src/bench/roofline.js");
const { declaredKernels } = await load("src/gpu/kernel.js");
const { checkKernelSource } = await load("src/gpu/wgsl.js");
const { SHADERS } = await load("src/gpu/shaders.gen.js");

const errors = [];
const used = new Set();
for (const decl of declaredKernels()) {
  used.add(decl.shader);
  const source = SHADERS[decl.shader];
  if (source === undefined) errors.push(`kernel ${decl.name}: no shaders/${decl.shader}.wgsl`);
  else errors.push(...checkKernelSource(decl, source));
}
for (const name of Object.keys(SHADERS)) {
  if (!name.startsWith("lib/") && !used.has(name)) errors.push(`shaders/${name}.wgsl: no kernel declaration uses it`);
}
if (errors.length > 0) {
  console.error(`kernel check failed:\n${errors.map((e) => `  ${e}`).join("\n")}`);
  process.exit(1);
}
console.error(`kernel check: ${declaredKernels().length} declarations agree with their shaders`);
