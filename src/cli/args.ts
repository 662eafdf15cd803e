// The command line's one parser. Each command is declared once (name, summary, positionals, flags with their types,
// defaults, help and rules, an example; see commands.ts), and parsing, validation, `--help` and the usage errors all
// come from that declaration. A malformed command line is a UsageError: one line naming the flag or argument at
// fault, then the command's usage, exit code 2.
import { statSync } from "node:fs";
import { join } from "node:path";

/** A malformed command line: reported with the command's usage and exit code 2. */
export class UsageError extends Error {}

/** One flag: how its value is read and checked, and what --help says about it. */
export interface Flag<V> {
  readonly help: string;
  /** The placeholder for its value in the help (N, TEXT, DIR); absent for a boolean flag, which takes no value. */
  readonly metavar?: string;
  /** What a valid value is ("an integer >= 2"), for the help and the error that refuses one. */
  readonly rule?: string;
  /** Parses one given value; throws a UsageError naming `flag` for a bad one. */
  readonly parse?: (text: string, flag: string) => unknown;
  /** The value when the flag is absent (shown in the help). */
  readonly default?: unknown;
  /** What the flag's absence means, for the help, where no value of its own stands in ("generation_config.json's"). */
  readonly defaultText?: string;
  /** Given more than once, its values are collected into a list (in order); otherwise a repeat is an error. */
  readonly repeatable?: boolean;
  /** The command refuses to run without it. */
  readonly required?: boolean;
  /** One letter, given as -x. */
  readonly short?: string;
  /** Flags without which this one does not apply (`--no-reasoning` needs `--query`). */
  readonly requires?: readonly string[];
  /** Flags with which this one does not apply (`--max-new-tokens` with `--no-reasoning`). */
  readonly conflicts?: readonly string[];
  /** The parsed value's type, for the type checker only. */
  readonly __value?: () => V;
}

export type Flags = Record<string, Flag<unknown>>;

export interface Positional {
  readonly name: string;
  readonly help: string;
  /**
   * "model": a Hugging Face model folder, checked to exist, be a folder and hold config.json before anything loads;
   * "folder": a folder that must exist. Other arguments are passed on as they are.
   */
  readonly kind?: "model" | "folder";
  /** A flag that takes this argument's place: given, the argument must be absent; absent, the argument is required. */
  readonly unless?: string;
}

export interface CommandSpec<F extends Flags = Flags, P extends readonly Positional[] = readonly Positional[]> {
  readonly name: string;
  /** One line, for the list of commands and the top of --help. */
  readonly summary: string;
  /** Further paragraphs of --help, after the flags. */
  readonly notes?: string;
  readonly positionals: P;
  readonly flags: F;
  /** Flags of which exactly one must be given. */
  readonly oneOf?: readonly (keyof F & string)[];
  /** Command lines shown in --help (without the leading `npx r3gpu`). */
  readonly examples: readonly string[];
}

type FlagValues<F extends Flags> = { [K in keyof F]: F[K] extends Flag<infer V> ? V : never };
type PositionalValues<P extends readonly Positional[]> = {
  [E in P[number] as E["name"]]: E extends { unless: string } ? string | undefined : string;
};

/** A parsed command line. */
export interface Args<F extends Flags = Flags, P extends readonly Positional[] = readonly Positional[]> {
  flags: FlagValues<F>;
  positionals: PositionalValues<P>;
  /** The command line as given, after the command name. */
  argv: readonly string[];
}

export type ArgsOf<S> = S extends CommandSpec<infer F, infer P> ? Args<F, P> : never;

/** Declares a command; the `const` parameter keeps positional names as literal types, for typed access. */
export function defineCommand<F extends Flags, const P extends readonly Positional[]>(spec: CommandSpec<F, P>): CommandSpec<F, P> {
  return spec;
}

// ---- flag types ----

interface ValueOptions<D> {
  metavar?: string;
  default?: D;
  defaultText?: string;
  short?: string;
}

/** A flag without a value: true when given. */
export function boolean(help: string, opts: { short?: string } = {}): Flag<boolean> {
  return { help, default: false, ...opts };
}

export function text(help: string, opts: ValueOptions<string> & { default: string }): Flag<string>;
export function text(help: string, opts?: ValueOptions<string>): Flag<string | undefined>;
/** Any text, except an empty or blank one, which is never meant. */
export function text(help: string, opts: ValueOptions<string> = {}): Flag<unknown> {
  return valueFlag(help, { metavar: "TEXT", ...opts }, (value, flag) => {
    if (value.trim() === "") throw new UsageError(`${flag} is empty`);
    return value;
  });
}

export interface IntegerRule {
  min?: number;
  max?: number;
}

export function integer(help: string, opts: IntegerRule & ValueOptions<number> & { default: number }): Flag<number>;
export function integer(help: string, opts?: IntegerRule & ValueOptions<number>): Flag<number | undefined>;
/** A decimal integer: digits only, with a leading minus where the range allows negatives (no 0x10, 1e2 or ""). */
export function integer(help: string, opts: IntegerRule & ValueOptions<number> = {}): Flag<unknown> {
  const rule = `an integer ${rangeText(opts.min, opts.max)}`;
  return valueFlag(help, { metavar: "N", rule, ...opts }, (value, flag) => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(n) || (opts.min !== undefined && n < opts.min) ||
      (opts.max !== undefined && n > opts.max)) {
      throw new UsageError(`${flag} must be ${rule}, got "${value}"`);
    }
    return n;
  });
}

export interface NumberRule {
  /** Inclusive unless `above` says otherwise. */
  min?: number;
  max?: number;
  /** The value must be above min (min itself is refused). */
  above?: boolean;
}

export function number(help: string, opts: NumberRule & ValueOptions<number> & { default: number }): Flag<number>;
export function number(help: string, opts?: NumberRule & ValueOptions<number>): Flag<number | undefined>;
/** A decimal number: digits with an optional point and leading minus (no exponents, hex, Infinity or ""). */
export function number(help: string, opts: NumberRule & ValueOptions<number> = {}): Flag<unknown> {
  const { min, max, above } = opts;
  let range: string;
  if (min !== undefined && max !== undefined) range = `in ${above ? "(" : "["}${min}, ${max}]`;
  else if (min !== undefined) range = `${above ? ">" : ">="} ${min}`;
  else range = max === undefined ? "" : `<= ${max}`;
  const rule = `a number ${range}`.trim();
  return valueFlag(help, { metavar: "X", rule, ...opts }, (value, flag) => {
    const n = Number(value);
    const inRange = (min === undefined || (above ? n > min : n >= min)) && (max === undefined || n <= max);
    if (!/^-?(\d+\.?\d*|\.\d+)$/.test(value) || !inRange) throw new UsageError(`${flag} must be ${rule}, got "${value}"`);
    return n;
  });
}

export function choice<const T extends string>(values: readonly T[], help: string, opts: ValueOptions<T> & { default: T }): Flag<T>;
export function choice<const T extends string>(values: readonly T[], help: string, opts?: ValueOptions<T>): Flag<T | undefined>;
/** One of a fixed set of words. */
export function choice(values: readonly string[], help: string, opts: ValueOptions<string> = {}): Flag<unknown> {
  const rule = `one of ${values.join(", ")}`;
  return valueFlag(help, { metavar: values.join("|"), rule, ...opts }, (value, flag) => {
    if (!values.includes(value)) throw new UsageError(`${flag} must be ${rule}, got "${value}"${suggestion(value, values)}`);
    return value;
  });
}

/** A comma-separated list of words of a fixed set, each at most once, in the order given. */
export function choiceList<const T extends string>(values: readonly T[], help: string, opts: { default: T[] }): Flag<T[]> {
  const rule = `a comma-separated list of ${values.join(", ")}`;
  return {
    help, metavar: values.join(","), rule, default: opts.default,
    parse: (value: string, flag: string) => {
      const items = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
      if (items.length === 0) throw new UsageError(`${flag} must be ${rule}, got "${value}"`);
      for (const [i, item] of items.entries()) {
        if (!(values as readonly string[]).includes(item)) throw new UsageError(`${flag}: "${item}" is not one of ${values.join(", ")}${suggestion(item, values)}`);
        if (items.indexOf(item) !== i) throw new UsageError(`${flag}: ${item} is given twice`);
      }
      return items as T[];
    },
  };
}

/** A comma-separated list of integers, e.g. token ids; `item` names one of them in messages. */
export function integerList(help: string, opts: { min?: number; item: string; metavar?: string }): Flag<number[] | undefined> {
  const rule = `a comma-separated list of ${opts.item}s`;
  return valueFlag(help, { metavar: opts.metavar ?? "LIST", rule }, (value, flag) => {
    const items = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
    if (items.length === 0) throw new UsageError(`${flag} must be ${rule}, got "${value}"`);
    return items.map((item) => {
      const n = Number(item);
      if (!/^-?\d+$/.test(item) || !Number.isSafeInteger(n)) throw new UsageError(`${flag}: "${item}" is not an integer ${opts.item}`);
      if (opts.min !== undefined && n < opts.min) throw new UsageError(`${flag}: ${opts.item} ${item} is below ${opts.min}`);
      return n;
    });
  });
}

/**
 * A flag whose value `parse` reads: the typed helpers above are made with it, and a command can use it for a value
 * of its own kind (a shape name or a model folder). `parse` throws a UsageError naming the flag for a bad value.
 */
export function valueFlag<V>(help: string, opts: ValueOptions<unknown> & { metavar: string; rule?: string },
  parse: (text: string, flag: string) => V): Flag<V | undefined> {
  return { help, parse, ...opts };
}

export function repeatable<V>(flag: Flag<V | undefined>, defaults: V[]): Flag<V[]>;
export function repeatable<V>(flag: Flag<V | undefined>): Flag<V[] | undefined>;
/** The same flag, given any number of times: its values in order. */
export function repeatable<V>(flag: Flag<V | undefined>, defaults?: V[]): Flag<unknown> {
  return { ...flag, repeatable: true, default: defaults };
}

/** The same flag, now one the command needs. */
export function required<V>(flag: Flag<V | undefined>): Flag<V> {
  return { ...flag, required: true } as Flag<V>;
}

function rangeText(min: number | undefined, max: number | undefined): string {
  if (min !== undefined && max !== undefined) return `from ${min} to ${max}`;
  if (min !== undefined) return `>= ${min}`;
  return max === undefined ? "" : `<= ${max}`;
}

// ---- parsing ----

/** Whether argv asks for the command's help (before any `--`, after which everything is an argument). */
export function wantsHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).some((a) => a === "-h" || a === "--help");
}

// A word that reads as a flag rather than a value: "--x", or "-x" with a letter, so that "-1" and "-0.5" are values.
const FLAG_LIKE = /^(--.|-[A-Za-z])/;

/** Parses a command line against a command's declaration (help is the caller's: see wantsHelp). */
export function parseArgs<F extends Flags, P extends readonly Positional[]>(spec: CommandSpec<F, P>, argv: readonly string[]): Args<F, P> {
  const byShort = new Map(Object.entries(spec.flags).filter(([, f]) => f.short).map(([name, f]) => [f.short!, name]));
  const values: Record<string, unknown> = {};
  const given = new Set<string>();
  const words: string[] = [];

  for (let i = 0; i < argv.length; i++) {
    const word = argv[i];
    if (word === "--") {
      words.push(...argv.slice(i + 1));
      break;
    }
    if (!FLAG_LIKE.test(word)) {
      words.push(word);
      continue;
    }
    const eq = word.indexOf("=");
    const written = eq < 0 ? word : word.slice(0, eq);
    const name = written.startsWith("--") ? written.slice(2) : byShort.get(written.slice(1));
    const flag = name === undefined ? undefined : spec.flags[name];
    if (name === undefined || flag === undefined) {
      const names = Object.entries(spec.flags).flatMap(([n, f]) => (f.short ? [`--${n}`, `-${f.short}`] : [`--${n}`]));
      throw new UsageError(`${written}: unknown flag${suggestion(written, [...names, "--help"])}`);
    }
    if (given.has(name) && !flag.repeatable) throw new UsageError(`${written}: given twice; it takes one value`);
    given.add(name);
    if (!flag.parse) {
      if (eq >= 0) throw new UsageError(`${written}: takes no value, got "${word.slice(eq + 1)}"`);
      values[name] = true;
      continue;
    }
    let value: string;
    if (eq >= 0) {
      value = word.slice(eq + 1);
    } else if (i + 1 < argv.length && !FLAG_LIKE.test(argv[i + 1])) {
      value = argv[++i];
    } else {
      throw new UsageError(`${written}: needs a value (${flag.metavar})` +
        (i + 1 < argv.length ? `; for one that starts with "-", write ${written}=${argv[i + 1]}` : ""));
    }
    const parsed = flag.parse(value, written);
    values[name] = flag.repeatable ? [...((values[name] as unknown[] | undefined) ?? []), parsed] : parsed;
  }

  const expected = spec.positionals.filter((p) => p.unless === undefined || !given.has(p.unless));
  if (words.length > expected.length) {
    const replaced = spec.positionals.find((p) => p.unless !== undefined && given.has(p.unless));
    throw new UsageError(replaced ? `${replaced.name}: does not apply with --${replaced.unless} (got "${words[0]}")`
      : `unexpected argument "${words[expected.length]}"`);
  }
  if (words.length < expected.length) {
    const missing = expected[words.length];
    throw new UsageError(`missing ${missing.name}${missing.unless ? ` (or --${missing.unless})` : ""}`);
  }

  for (const [name, flag] of Object.entries(spec.flags)) {
    if (!given.has(name)) {
      if (flag.required) throw new UsageError(`--${name}${flag.metavar ? ` ${flag.metavar}` : ""} is required`);
      values[name] = flag.default;
      continue;
    }
    for (const other of flag.requires ?? []) {
      if (!given.has(other)) throw new UsageError(`--${name}: applies only with --${other}`);
    }
    for (const other of flag.conflicts ?? []) {
      if (given.has(other)) throw new UsageError(`--${name}: does not apply with --${other}`);
    }
  }
  if (spec.oneOf) {
    const present = spec.oneOf.filter((name) => given.has(name));
    const list = spec.oneOf.map((name) => `--${name}`).join(" or ");
    if (present.length === 0) throw new UsageError(`give ${list}`);
    if (present.length > 1) throw new UsageError(`--${present[1]}: does not apply with --${present[0]}; give ${list}`);
  }

  const positionals: Record<string, string> = {};
  expected.forEach((p, i) => {
    if (p.kind) checkFolder(words[i], p.name, p.kind === "model");
    positionals[p.name] = words[i];
  });
  return { flags: values as FlagValues<F>, positionals: positionals as PositionalValues<P>, argv };
}

/**
 * A missing or misnamed folder is reported as just that, before anything else reads it (a model folder without a
 * config.json would otherwise fail later on whichever file is read first). Not a usage error: the line is well formed.
 */
function checkFolder(path: string, what: string, model: boolean): void {
  const stat = statSync(path, { throwIfNoEntry: false });
  if (!stat) throw new Error(`${what} ${path}: no such folder`);
  if (!stat.isDirectory()) throw new Error(`${what} ${path}: not a folder`);
  if (model && !statSync(join(path, "config.json"), { throwIfNoEntry: false })?.isFile()) {
    throw new Error(`${what} ${path}: no config.json in this folder, so it is not a Hugging Face model folder`);
  }
}

/** "; did you mean X?" for the candidate nearest to `word`, when one is near enough to be a likely misspelling. */
export function suggestion(word: string, candidates: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  // A third of the word's length (at least 1, at most 3) catches typos without suggesting unrelated names.
  const limit = Math.max(1, Math.min(3, Math.floor(word.replace(/^-+/, "").length / 3)));
  return best !== undefined && bestDistance <= limit ? `; did you mean ${best}?` : "";
}

/** Levenshtein distance, with a transposition counting as one edit ("--promtp" is one from "--prompt"). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

// ---- help ----

/** `usage: r3gpu NAME ...`: the positionals, the flags it needs, and [flags]. */
function usageLine(spec: CommandSpec): string {
  const parts = [`r3gpu ${spec.name}`];
  const metavar = (name: string) => `--${name}${spec.flags[name].metavar ? ` ${spec.flags[name].metavar}` : ""}`;
  for (const p of spec.positionals) parts.push(p.unless ? `${p.name}|${metavar(p.unless)}` : p.name);
  if (spec.oneOf) parts.push(`(${spec.oneOf.map(metavar).join(" | ")})`);
  for (const [name, flag] of Object.entries(spec.flags)) if (flag.required) parts.push(metavar(name));
  const optional = Object.entries(spec.flags).some(([name, f]) => !f.required && !spec.oneOf?.includes(name) &&
    !spec.positionals.some((p) => p.unless === name));
  if (optional) parts.push("[flags]");
  return `usage: ${parts.join(" ")}`;
}

/** The positionals and flags, each with its help; what a usage error prints after its message. */
export function usage(spec: CommandSpec): string {
  const rows: [string, string][] = spec.positionals.map((p) => [p.name, p.help]);
  const lines = [usageLine(spec), ""];
  if (rows.length > 0) lines.push("arguments:", ...table(rows), "");
  const flagRows: [string, string][] = Object.entries(spec.flags).map(([name, f]) => {
    const head = `${f.short ? `-${f.short}, ` : ""}--${name}${f.metavar ? ` ${f.metavar}` : ""}`;
    const facts = [
      f.rule && !f.metavar?.includes("|") ? f.rule : undefined,
      f.default !== undefined && f.default !== false ? `default ${[f.default].flat().join(", ")}`
        : f.defaultText && `default ${f.defaultText}`,
      f.repeatable ? "may be repeated" : undefined,
      f.required ? "required" : undefined,
      ...(f.requires ?? []).map((o) => `only with --${o}`),
      ...(f.conflicts ?? []).map((o) => `not with --${o}`),
    ].filter((x) => x !== undefined);
    return [head, facts.length > 0 ? `${f.help} (${facts.join("; ")})` : f.help];
  });
  flagRows.push(["-h, --help", "print this help and exit"]);
  lines.push("flags:", ...table(flagRows));
  return lines.join("\n");
}

/** What `r3gpu NAME --help` prints. */
export function helpText(spec: CommandSpec): string {
  const parts = [`r3gpu ${spec.name}: ${spec.summary}`, "", usage(spec)];
  if (spec.notes) parts.push("", wrap(spec.notes, 0).join("\n"));
  parts.push("", spec.examples.length > 1 ? "examples:" : "example:", ...spec.examples.map((e) => `  npx r3gpu ${e}`));
  return parts.join("\n") + "\n";
}

const WIDTH = 100;
const HEAD = 26;

/** Two columns, the second wrapped to the line width; a long first column puts the second on the next line. */
function table(rows: [string, string][]): string[] {
  const out: string[] = [];
  for (const [head, body] of rows) {
    const lines = wrap(body, HEAD + 2);
    if (head.length + 2 > HEAD) out.push(`  ${head}`, ...lines.map((l) => " ".repeat(HEAD + 2) + l));
    else out.push(`  ${head.padEnd(HEAD)}${lines[0]}`, ...lines.slice(1).map((l) => " ".repeat(HEAD + 2) + l));
  }
  return out;
}

function wrap(text: string, indent: number): string[] {
  const lines: string[] = [];
  for (const paragraph of text.split("\n")) {
    let line = "";
    for (const word of paragraph.split(" ")) {
      if (line !== "" && indent + line.length + 1 + word.length > WIDTH) {
        lines.push(line);
        line = word;
      } else {
        line = line === "" ? word : `${line} ${word}`;
      }
    }
    lines.push(line);
  }
  return lines;
}
