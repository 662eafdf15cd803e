// The host-shader contract: the preprocessor, and the check that the build runs over every kernel declaration
// (scripts/check-kernels.mjs), shown to pass on the real kernels and to fail, naming the kernel and the item, on
// every kind of drift.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { declaredKernels, defineKernel } from "../src/gpu/kernel.ts";
import { SHADERS } from "../src/gpu/shaders.gen.ts";
import { checkKernelSource, preprocess } from "../src/gpu/wgsl.ts";
import "../src/ops/index.ts";
import "../src/bench/roofline.ts";
import { repoRoot } from "./shared-paths.ts";

const decl = defineKernel({
  name: "test.scale",
  shader: "test_scale",
  workgroupSize: 64,
  overrides: { ADD: "bool" },
  bindings: { x: "read", bias: { access: "read", when: "HAS_BIAS" }, y: "read_write" },
  uniforms: { n: "u32", factor: "f32" },
});

const good = `struct Params { n: u32, factor: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
#if HAS_BIAS
@group(0) @binding(2) var<storage, read> bias: array<f32>;
#endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
override ADD: bool = false;
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (gid.x < p.n) { y[gid.x] = x[gid.x] * p.factor; }
}
`;

test("every declared kernel agrees with its shader, and the build's check says so", () => {
  const kernels = declaredKernels().filter((d) => d !== (decl as object));
  assert.ok(kernels.length >= 12, `${kernels.length} kernels declared`);
  for (const d of kernels) assert.deepEqual(checkKernelSource(d, SHADERS[d.shader]), [], d.name);
  const out = execFileSync(process.execPath, ["scripts/check-kernels.mjs"], { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  assert.equal(out, "");
});

test("a shader that matches its declaration passes", () => {
  assert.deepEqual(checkKernelSource(decl, good), []);
});

const drift: [string, string, RegExp][] = [
  ["a binding renamed", good.replace("var<storage, read> x:", "var<storage, read> input:"), /@binding\(1\) is "input"; the declaration has "x" there/],
  ["a binding with the wrong access", good.replace("read_write> y", "read> y"), /@binding\(3\) y has access read; the declaration says read_write/],
  ["a binding missing", good.replace(/@group\(0\) @binding\(3\)[^\n]*\n/, ""), /no @binding\(3\); the declaration has y/],
  ["a binding too many", good.replace("override ADD", "@group(0) @binding(4) var<storage, read> extra: array<f32>;\noverride ADD"), /@binding\(4\) extra is not in the declaration/],
  ["an optional binding outside its #if", good.replace("#if HAS_BIAS\n", "").replace("#endif\n", ""), /bias is optional \(when HAS_BIAS\) but not inside #if HAS_BIAS/],
  ["a uniform field of another type", good.replace("factor: f32 }", "factor: u32 }"), /struct Params is \{ n: u32, factor: u32 \}; the declaration's uniforms are \{ n: u32, factor: f32 \}/],
  ["uniform fields out of order", good.replace("{ n: u32, factor: f32 }", "{ factor: f32, n: u32 }"), /struct Params is \{ factor: f32, n: u32 \}/],
  ["an override the declaration lacks", good.replace("override ADD: bool = false;", "override ADD: bool = false;\noverride TM: u32 = 1u;"), /overrides are \{ ADD: bool, TM: u32 \}; the declaration's are \{ ADD: bool \}/],
  ["a literal workgroup size", good.replace("@workgroup_size(WG)", "@workgroup_size(64)"), /@workgroup_size\(64\) must be @workgroup_size\(WG\)/],
  ["a redefined layout constant", good.replace("override ADD", "const W_LANES: u32 = 4u;\noverride ADD"), /defines const W_LANES, which the host provides/],
  ["an unknown flag", good.replace("fn main", "#if F16\nenable f16;\n#endif\nfn main"), /#if F16: not a flag of the declaration \(HAS_BIAS\)/],
];

for (const [what, source, message] of drift) {
  test(`the check names the kernel and the item: ${what}`, () => {
    const errors = checkKernelSource(decl, source);
    assert.equal(errors.length, 1, errors.join("\n"));
    assert.match(errors[0], /^kernel test\.scale \(shaders\/test_scale\.wgsl\): /);
    assert.match(errors[0], message);
  });
}

test("preprocessor: #if, #if !, #else and nesting keep line numbers; bad directives are errors", () => {
  const src = ["a", "#if A", "b", "#if !B", "c", "#else", "d", "#endif", "#else", "e", "#endif", "f"].join("\n");
  assert.deepEqual(preprocess(src, new Set(["A"]), "t").split("\n"), ["a", "", "b", "", "c", "", "", "", "", "", "", "f"]);
  assert.deepEqual(preprocess(src, new Set(["A", "B"]), "t").split("\n"), ["a", "", "b", "", "", "", "d", "", "", "", "", "f"]);
  assert.deepEqual(preprocess(src, new Set(), "t").split("\n"), ["a", "", "", "", "", "", "", "", "", "e", "", "f"]);
  assert.throws(() => preprocess("#if A\nx", new Set(), "t"), /t\.wgsl: 1 #if block\(s\) not closed/);
  assert.throws(() => preprocess("#endif", new Set(), "t"), /t\.wgsl:1: #endif without #if/);
  assert.throws(() => preprocess("#pragma X", new Set(), "t"), /t\.wgsl:1: unknown directive #pragma/);
  assert.throws(() => preprocess("#define X 1", new Set(), "t"), /t\.wgsl:1: malformed directive "#define X 1"/);
});
