// Mutations of JSON files: a value replaced by one of the wrong type or an extreme one, a key deleted, added or
// repeated, and damage to the text itself. Values JSON.stringify cannot write (1e999) are spliced in as raw text.
import type { Rng } from "../rng.ts";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const RAW = "\u0001raw:";
const RAW_END = "\u0001";

/** A value written into the JSON text as it is (e.g. "1e999", which JSON.parse reads as Infinity). */
export function raw(text: string): string {
  return `${RAW}${text}${RAW_END}`;
}

/** JSON text of `value`, with raw() values spliced in. */
export function stringify(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent)
    .replace(/"\\u0001raw:(?:[^"\\]|\\.)*?\\u0001"/g, (literal) => JSON.parse(literal).slice(RAW.length, -RAW_END.length));
}

/** `depth` arrays or objects one inside the other, as raw text: JSON.stringify and structuredClone recurse. */
export function nested(depth: number, asObject: boolean, key = "a"): string {
  return raw(asObject ? `{"${key}":`.repeat(depth) + "1" + "}".repeat(depth) : "[".repeat(depth) + "1" + "]".repeat(depth));
}

/** A value of another type or an extreme value, with a label for the report. */
export function hostileValue(rng: Rng): { label: string; value: Json } {
  const choices: [string, () => Json][] = [
    ["0", () => 0], ["-1", () => -1], ["1.5", () => 1.5], ["2^31", () => 2 ** 31], ["2^32+1", () => 2 ** 32 + 1],
    ["2^53+2", () => 2 ** 53 + 2], ["1e9", () => 1e9], ["1e308", () => 1e308], ["-1e308", () => -1e308],
    ["5e-324", () => 5e-324], ["1e999", () => raw("1e999")], ["-1e999", () => raw("-1e999")], ["-0", () => raw("-0")],
    ['""', () => ""], ['"false"', () => "false"], ['"true"', () => "true"], ['"1"', () => "1"], ['"64"', () => "64"],
    ["a long string", () => "x".repeat(100_000)], ["NUL", () => "\u0000"], ["a lone surrogate", () => "\uD800"],
    ["a path", () => "../../../../etc/passwd"], ["true", () => true], ["false", () => false], ["null", () => null],
    ["[]", () => []], ["[1,2,3]", () => [1, 2, 3]], ["{}", () => ({})], ["an array nested 100000 deep", () => nested(100_000, false)],
    ["an object nested 100000 deep", () => nested(100_000, true)], ["100000 zeros", () => new Array(100_000).fill(0)],
  ];
  const [label, make] = rng.pick(choices);
  return { label, value: make() };
}

type Path = (string | number)[];

/** Every path into `value` (objects' keys and arrays' indexes), the root excluded; long arrays are sampled. */
export function paths(value: Json, limit = 4000): Path[] {
  const out: Path[] = [];
  const walk = (v: Json, path: Path) => {
    if (out.length >= limit || v === null || typeof v !== "object") return;
    const keys: (string | number)[] = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
    for (const k of keys) {
      const p = [...path, k];
      out.push(p);
      walk((v as any)[k], p);
    }
  };
  walk(value, []);
  return out;
}

export function getAt(root: Json, path: Path): Json {
  return path.reduce<any>((v, k) => v?.[k], root);
}

export function setAt(root: Json, path: Path, value: Json | undefined): void {
  const parent = getAt(root, path.slice(0, -1)) as any;
  const key = path.at(-1)!;
  if (value === undefined) {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key];
  } else {
    parent[key] = value;
  }
}

export function showPath(path: Path): string {
  return path.map((k) => (typeof k === "number" ? `[${k}]` : `.${k}`)).join("") || "(root)";
}

/** Text-level damage to a JSON file's bytes. */
export function damageText(rng: Rng, text: string): { label: string; bytes: Uint8Array } {
  const bytes = Buffer.from(text, "utf8");
  const choices: [string, () => Uint8Array][] = [
    ["truncated", () => bytes.subarray(0, rng.int(bytes.length))],
    ["empty", () => new Uint8Array(0)],
    ["a byte-order mark before it", () => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bytes])],
    ["invalid UTF-8 inside", () => {
      const b = Buffer.from(bytes);
      b[rng.int(b.length)] = 0xff;
      return b;
    }],
    ["a random byte changed", () => {
      const b = Buffer.from(bytes);
      b[rng.int(b.length)] = rng.int(256);
      return b;
    }],
    ["garbage after it", () => Buffer.concat([bytes, Buffer.from(" }{x")])],
    ["not JSON", () => Buffer.from("root:x:0:0:root:/root:/bin/bash\n")],
  ];
  const [label, make] = rng.pick(choices);
  return { label, bytes: make() };
}

/** The text of `value` with its top-level key `key` written twice, the first time with `first`. */
export function withDuplicateKey(value: Record<string, Json>, key: string, first: Json): string {
  const text = stringify(value);
  return `{${JSON.stringify(key)}:${stringify(first)},${text.slice(1)}`;
}
