// docs/ARCHITECTURE.md quotes the engine's own files as its worked examples; a quote that no longer matches its file
// fails here, so the page cannot drift from the code.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { repoRoot } from "./shared-paths.ts";

const page = readFileSync(join(repoRoot, "docs", "ARCHITECTURE.md"), "utf8");
const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
const quotesOf = (text: string) => [...text.matchAll(/^```\w+ (file|excerpt)=(\S+)\n([\s\S]*?)^```$/gm)];

test("docs/ARCHITECTURE.md quotes files; the README quotes the worked example kernel", () => {
  assert.ok(quotesOf(page).length >= 4, `${quotesOf(page).length} quotes found`);
  assert.ok(quotesOf(readme).some(([, kind, path]) => kind === "file" && path === "examples/kernels/linear_naive.wgsl"), "no quote of the example kernel");
});

for (const [doc, [, kind, path, body]] of [...quotesOf(page).map((q) => ["docs/ARCHITECTURE.md", q] as const), ...quotesOf(readme).map((q) => ["README.md", q] as const)]) {
  test(`${doc}: the ${kind} of ${path} is verbatim`, () => {
    const source = readFileSync(join(repoRoot, path), "utf8");
    if (kind === "file") assert.equal(body, source, `${path} differs from its quote`);
    else assert.ok(source.includes(body), `${path} no longer contains the quoted lines:\n${body}`);
  });
}

test("docs/ARCHITECTURE.md names every folder of src/ and of the repository", () => {
  const folders = (dir: string) => readdirSync(join(repoRoot, dir), { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith(".") && !["node_modules", "dist", "dist-web", "test-output", "scratch", "device"].includes(e.name))
    .map((e) => `${dir}${e.name}/`);
  for (const f of [...folders(""), ...folders("src/")]) assert.ok(page.includes(`\`${f}\``), `${f} is not described`);
});
