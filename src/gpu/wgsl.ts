// WGSL source handling: a small preprocessor (optional bindings, `enable` lines for optional features), the
// assembly of a shader module from its parts, and the check of a shader against its kernel declaration, which the
// build runs over every kernel (scripts/check-kernels.mjs) so that the host and the shader cannot drift apart.
//
// Preprocessor: a line `#if NAME` or `#if !NAME` opens a block kept when the flag NAME is (or is not) set, `#else`
// and `#endif` as usual; blocks nest. Removed lines become empty, so compiler messages keep the file's line numbers.
import { SHADER_CONSTANTS } from "./layout.ts";
import type { KernelDecl, ScalarType } from "./kernel.ts";

const DIRECTIVE = /^\s*#(\w+)\s*(!?)(\w*)\s*$/;

/** `source` with the blocks of unset flags removed. Throws on an unbalanced or unknown directive. */
export function preprocess(source: string, flags: ReadonlySet<string>, name = "shader"): string {
  const out: string[] = [];
  // Each open block: whether its lines are kept, and whether the enclosing ones are.
  const stack: { keep: boolean; outer: boolean }[] = [];
  const keeping = () => stack.every((b) => b.keep);
  source.split("\n").forEach((line, i) => {
    if (!line.trimStart().startsWith("#")) {
      out.push(keeping() ? line : "");
      return;
    }
    const m = DIRECTIVE.exec(line);
    const where = `${name}.wgsl:${i + 1}`;
    if (!m) throw new Error(`${where}: malformed directive "${line.trim()}"`);
    const [, word, negate, flag] = m;
    if (word === "if") {
      if (!flag) throw new Error(`${where}: #if needs a flag name`);
      stack.push({ keep: flags.has(flag) !== (negate === "!"), outer: keeping() });
    } else if (word === "else") {
      const top = stack.at(-1);
      if (!top) throw new Error(`${where}: #else without #if`);
      top.keep = !top.keep;
    } else if (word === "endif") {
      if (!stack.pop()) throw new Error(`${where}: #endif without #if`);
    } else {
      throw new Error(`${where}: unknown directive #${word}`);
    }
    out.push("");
  });
  if (stack.length > 0) throw new Error(`${name}.wgsl: ${stack.length} #if block(s) not closed`);
  return out.join("\n");
}

/** Joins module parts and moves their `enable`/`requires` directives to the top, where WGSL requires them. */
export function assemble(parts: string[]): string {
  const directives = new Set<string>();
  const body = parts.join("\n").split("\n").map((line) => {
    if (/^\s*(enable|requires)\s+[\w\s,-]+;\s*$/.test(line)) {
      directives.add(line.trim());
      return "";
    }
    return line;
  });
  return [...directives, ...body].join("\n");
}

/** What a shader declares at its interface, read from its source (all #if branches together). */
export interface ShaderInterface {
  bindings: { group: number; binding: number; space: string; access: string; name: string; flags: string[] }[];
  params: { name: string; type: string }[] | undefined;
  overrides: { name: string; type: string }[];
  workgroupSize: string | undefined;
  constants: string[];
  flags: string[];
}

export function readInterface(source: string): ShaderInterface {
  const lines = source.split("\n").map((l) => l.replace(/\/\/.*$/, ""));
  const result: ShaderInterface = { bindings: [], params: undefined, overrides: [], workgroupSize: undefined, constants: [], flags: [] };
  const open: string[] = [];
  const text: string[] = [];
  for (const line of lines) {
    const m = DIRECTIVE.exec(line);
    if (m) {
      if (m[1] === "if") {
        open.push(m[3]);
        if (!result.flags.includes(m[3])) result.flags.push(m[3]);
      } else if (m[1] === "endif") open.pop();
      text.push("");
      continue;
    }
    const b = /@group\((\d+)\)\s*@binding\((\d+)\)\s*var(?:<([^>]*)>)?\s+(\w+)\s*:/.exec(line);
    if (b) {
      const [space, access = ""] = (b[3] ?? "handle").split(",").map((s) => s.trim());
      result.bindings.push({ group: Number(b[1]), binding: Number(b[2]), space, access, name: b[4], flags: [...open] });
    }
    text.push(line);
  }
  const all = text.join("\n");
  const params = /struct\s+Params\s*\{([^}]*)\}/.exec(all);
  if (params) {
    result.params = params[1].split(",").map((f) => f.trim()).filter(Boolean).map((f) => {
      const [name, type] = f.split(":").map((s) => s.trim());
      return { name, type };
    });
  }
  for (const o of all.matchAll(/\boverride\s+(\w+)\s*:\s*(\w+)/g)) result.overrides.push({ name: o[1], type: o[2] });
  result.workgroupSize = /@workgroup_size\(([^)]*)\)/.exec(all)?.[1].trim();
  for (const c of all.matchAll(/(?:^|[\n;{}])\s*const\s+(\w+)/g)) result.constants.push(c[1]);
  return result;
}

/**
 * Every way `source` (the kernel's own shader file, before any prelude) departs from `decl`, as messages naming
 * the kernel and the item; empty when they agree.
 */
export function checkKernelSource(decl: KernelDecl, source: string): string[] {
  const errors: string[] = [];
  const fail = (msg: string) => errors.push(`kernel ${decl.name} (shaders/${decl.shader}.wgsl): ${msg}`);
  const iface = readInterface(source);

  const uniformFields = Object.entries(decl.uniforms) as [string, ScalarType][];
  const expected = [
    { name: "p", space: "uniform", access: "", when: undefined as string | undefined },
    ...Object.entries(decl.bindings).map(([name, spec]) => {
      const { access, when } = typeof spec === "string" ? { access: spec, when: undefined } : spec;
      return { name, space: "storage", access, when };
    }),
  ];
  const got = iface.bindings;
  for (const b of got) if (b.group !== 0) fail(`binding ${b.name} is in group ${b.group}; kernels use group 0 only`);
  expected.forEach((want, i) => {
    const have = got.find((b) => b.binding === i);
    if (!have) return fail(`no @binding(${i}); the declaration has ${want.name} (${want.space}${want.access ? `, ${want.access}` : ""}) there`);
    if (have.name !== want.name) fail(`@binding(${i}) is "${have.name}"; the declaration has "${want.name}" there`);
    if (have.space !== want.space) fail(`@binding(${i}) ${have.name} is var<${have.space}>; the declaration says ${want.space}`);
    if (want.space === "storage" && (have.access || "read") !== want.access) {
      fail(`@binding(${i}) ${have.name} has access ${have.access || "read"}; the declaration says ${want.access}`);
    }
    if (want.when && !have.flags.includes(want.when)) fail(`@binding(${i}) ${have.name} is optional (when ${want.when}) but not inside #if ${want.when}`);
    if (!want.when && have.flags.length > 0) fail(`@binding(${i}) ${have.name} is inside #if ${have.flags.join(", ")} but the declaration does not make it optional`);
  });
  for (const b of got) if (b.binding >= expected.length) fail(`@binding(${b.binding}) ${b.name} is not in the declaration`);

  if (!iface.params) fail("no struct Params (the uniform fields)");
  else {
    const fields = iface.params.map((f) => `${f.name}: ${f.type}`).join(", ");
    const want = uniformFields.map(([n, t]) => `${n}: ${t}`).join(", ");
    if (fields !== want) fail(`struct Params is { ${fields} }; the declaration's uniforms are { ${want} }`);
  }

  const overrides = iface.overrides.map((o) => `${o.name}: ${o.type}`).sort().join(", ");
  const wantOverrides = Object.entries(decl.overrides ?? {}).map(([n, t]) => `${n}: ${t}`).sort().join(", ");
  if (overrides !== wantOverrides) fail(`overrides are { ${overrides} }; the declaration's are { ${wantOverrides} }`);

  if (iface.workgroupSize !== "WG") fail(`@workgroup_size(${iface.workgroupSize ?? ""}) must be @workgroup_size(WG), the declaration's workgroupSize`);
  const injected = new Set([...Object.keys(SHADER_CONSTANTS), "WG", ...Object.keys(decl.constants ?? {})]);
  for (const c of iface.constants) if (injected.has(c)) fail(`defines const ${c}, which the host provides (declaration or src/gpu/layout.ts)`);

  const flags = new Set([...(decl.flags ?? []), ...expected.map((e) => e.when).filter((w): w is string => !!w)]);
  for (const f of iface.flags) if (!flags.has(f)) fail(`#if ${f}: not a flag of the declaration (${[...flags].join(", ") || "none"})`);
  return errors;
}
