// r3gpu used outside its own folder, as a user installs it: `npm pack` makes the package, `npm install -g` puts it
// under a temporary prefix (only its dependencies, never the devDependencies such as node-llama-cpp and its
// 677 MB of llama.cpp binaries), and the installed command, run from elsewhere, checks the model it bundles.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import { repoRoot } from "./shared-paths.ts";

const run = promisify(execFile);
const work = await mkdtemp(join(tmpdir(), "r3gpu-install-"));
after(() => rm(work, { recursive: true, force: true }));

// Run under `npm test`, the environment holds the outer npm's settings (npm_config_prefix and others); the npm
// started here must use only its own flags.
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));
const npm = (args: string[], cwd: string) => run("npm", args, { cwd, env, maxBuffer: 64 << 20 });
const pkg = JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8"));

describe("npm pack, npm install -g, r3gpu check", () => {
  test("the packed package installs under a prefix without its devDependencies and checks its bundled model", async () => {
    // The build is the one the tests run from (dist/); --ignore-scripts keeps npm from running anything else.
    const packed = await npm(["pack", "--ignore-scripts", "--json", "--pack-destination", work], repoRoot);
    const [{ filename, files }] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    const paths = new Set(files.map((f) => f.path));
    for (const path of ["bin/r3gpu.js", "dist/src/cli/main.js", "dist/src/index.js", "dist/src/index.d.ts",
      "models/tiny-qwen2/model.safetensors", "models/tiny-qwen2/golden.json", "package.json", "README.md"]) {
      assert.ok(paths.has(path), `the package holds ${path}`);
    }
    const extra = [...paths].filter((p) => /^(src|test|dist\/test|dist\/fuzz|node_modules|fuzz|web)\//.test(p));
    assert.deepEqual(extra, [], "sources, tests and dependencies stay out of the package");

    // The dependencies come from npm's cache where it holds them (--prefer-offline), else from the registry.
    const prefix = join(work, "prefix");
    await npm(["install", "--global", "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error",
      join(work, filename)], work);
    const installed = join(prefix, "lib", "node_modules", "r3gpu");
    const modules = join(installed, "node_modules");
    for (const dep of Object.keys(pkg.dependencies)) assert.ok(existsSync(join(modules, dep)), `dependency ${dep} installed`);
    for (const dev of ["node-llama-cpp", "@node-llama-cpp", "typescript", "vite", "deno", "playwright-core"]) {
      assert.ok(!existsSync(join(modules, dev)), `devDependency ${dev} not installed`);
    }

    const r3gpu = join(prefix, "bin", "r3gpu");
    const version = await run(r3gpu, ["--version"], { cwd: work });
    assert.equal(version.stdout.trim(), `r3gpu ${pkg.version}`);
    const check = await run(r3gpu, ["check", join(installed, "models", "tiny-qwen2")], { cwd: work });
    assert.match(check.stdout, /^PASS: every tensor within tolerance, greedy continuations agree$/m);
  });
});
