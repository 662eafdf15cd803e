// The command-line parser (src/cli/args.ts) on the real command declarations and on small ones of its own, the
// launcher's Dawn-warning filter, and the README's command tables and examples against the declarations. In-process
// and without a GPU; test/cli.test.ts runs the binary.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  boolean, choice, defineCommand, helpText, integer, integerList, number, parseArgs, repeatable, text, UsageError,
  wantsHelp, type CommandSpec,
} from "../src/cli/args.ts";
import { BENCH, CHAT, COMMANDS, DUMP, EMBED, EXPORT_GGUF, SEARCH } from "../src/cli/commands.ts";
import { DawnWarningFilter } from "../src/cli/launch.ts";
import { DEFAULT_BATCH_SIZE, DEFAULT_REASONING_TOKENS } from "../src/search/searchr3.ts";
import { embeddedModelDir, repoRoot } from "./shared-paths.ts";

const tiny = embeddedModelDir();

/** Asserts that parsing `argv` is a usage error with exactly `message`. */
function refuses(spec: CommandSpec<any, any>, argv: string[], message: string): void {
  assert.throws(() => parseArgs(spec, argv), (e: Error) => {
    assert.ok(e instanceof UsageError, `${e.message} is not a UsageError`);
    assert.equal(e.message, message);
    return true;
  });
}

describe("flag values", () => {
  const spec = defineCommand({
    name: "t",
    summary: "a test command",
    positionals: [],
    flags: {
      offset: integer("may be negative", { min: -10, max: 10 }),
      count: integer("at least 1", { min: 1, default: 3 }),
      scale: number("any number"),
      ratio: number("in (0, 1]", { min: 0, max: 1, above: true }),
      mode: choice(["fast", "exact"], "how", { default: "fast" }),
      tag: repeatable(text("a tag")),
      ids: integerList("ids", { min: 0, item: "token id" }),
      quiet: boolean("say less"),
    },
    examples: ["t --count 2"],
  });
  const flags = (...argv: string[]) => parseArgs(spec, argv).flags;

  test("integers and numbers are decimal; negatives are values where the range allows them", () => {
    assert.deepEqual([flags("--offset", "-3").offset, flags("--offset=-10").offset, flags("--scale", "-0.5").scale], [-3, -10, -0.5]);
    assert.equal(flags("--scale", ".25").scale, 0.25);
    for (const bad of ["", " 5", "0x10", "1e2", "+5", "5.0", "1_000", "Infinity", "99999999999999999999"]) {
      refuses(spec, ["--count", bad], `--count must be an integer >= 1, got "${bad}"`);
    }
    for (const bad of ["", "1e-3", "0x1", "NaN", "-", "1.2.3"]) refuses(spec, ["--scale", bad], `--scale must be a number, got "${bad}"`);
    refuses(spec, ["--count", "-1"], '--count must be an integer >= 1, got "-1"');
    refuses(spec, ["--offset", "-11"], '--offset must be an integer from -10 to 10, got "-11"');
    refuses(spec, ["--ratio", "0"], '--ratio must be a number in (0, 1], got "0"');
    assert.equal(flags("--ratio", "1").ratio, 1);
  });

  test("defaults, choices, lists and booleans", () => {
    assert.deepEqual(flags(), { offset: undefined, count: 3, scale: undefined, ratio: undefined, mode: "fast", tag: undefined, ids: undefined, quiet: false });
    assert.deepEqual(flags("--mode", "exact", "--quiet", "--tag", "a", "--tag=b", "--ids", "1, 2,3").ids, [1, 2, 3]);
    assert.deepEqual(flags("--tag", "a", "--tag=b").tag, ["a", "b"]);
    refuses(spec, ["--mode", "exakt"], '--mode must be one of fast, exact, got "exakt"; did you mean exact?');
    refuses(spec, ["--ids", "1,x"], '--ids: "x" is not an integer token id');
    refuses(spec, ["--ids", "1,-2"], "--ids: token id -2 is below 0");
    refuses(spec, ["--ids", ","], '--ids must be a comma-separated list of token ids, got ","');
    refuses(spec, ["--quiet=yes"], '--quiet: takes no value, got "yes"');
    refuses(spec, ["--tag", " "], "--tag is empty");
  });

  test("a repeated single-value flag, a missing value and a value that looks like a flag are errors", () => {
    refuses(spec, ["--count", "1", "--count", "2"], "--count: given twice; it takes one value");
    refuses(spec, ["--quiet", "--quiet"], "--quiet: given twice; it takes one value");
    refuses(spec, ["--count"], "--count: needs a value (N)");
    refuses(spec, ["--tag", "--quiet"], '--tag: needs a value (TEXT); for one that starts with "-", write --tag=--quiet');
    assert.deepEqual(flags("--tag=--quiet").tag, ["--quiet"]);
  });

  test("an unknown flag names the nearest one, if one is near", () => {
    refuses(spec, ["--cuont", "2"], "--cuont: unknown flag; did you mean --count?");
    refuses(spec, ["--quite"], "--quite: unknown flag; did you mean --quiet?");
    refuses(spec, ["--verbose"], "--verbose: unknown flag");
    refuses(spec, ["-x"], "-x: unknown flag");
  });
});

describe("the commands' declarations", () => {
  test("positionals: counted, named in errors, checked as model folders before anything loads", async (t) => {
    refuses(CHAT, [], "missing MODEL_DIR");
    refuses(CHAT, [tiny, "extra"], 'unexpected argument "extra"');
    refuses(SEARCH, [tiny, "--db", "d"], "missing QUESTION");
    // A negative number is an argument, not a flag: a question may be "-1".
    assert.equal(parseArgs(SEARCH, [tiny, "--db", "d", "-1"]).positionals.QUESTION, "-1");
    assert.equal(parseArgs(SEARCH, [tiny, "--db", "d", "--", "--not-a-flag"]).positionals.QUESTION, "--not-a-flag");

    const empty = await mkdtemp(join(tmpdir(), "r3gpu-args-"));
    t.after(() => rm(empty, { recursive: true, force: true }));
    const fails = (dir: string, message: string) => assert.throws(() => parseArgs(CHAT, [dir]), (e: Error) =>
      !(e instanceof UsageError) && e.message === message);
    fails(join(empty, "nothing"), `MODEL_DIR ${join(empty, "nothing")}: no such folder`);
    fails(join(repoRoot, "README.md"), `MODEL_DIR ${join(repoRoot, "README.md")}: not a folder`);
    fails(empty, `MODEL_DIR ${empty}: no config.json in this folder, so it is not a Hugging Face model folder`);
  });

  test("embed: --query, --doc or --jsonl, and the flags that apply only to a query or to --jsonl", () => {
    refuses(EMBED, [tiny], "give --query or --doc or --jsonl");
    refuses(EMBED, [tiny, "--query", "q", "--doc", "d"], "--doc: does not apply with --query; give --query or --doc or --jsonl");
    refuses(EMBED, [tiny, "--doc", "d", "--jsonl", "-"], "--jsonl: does not apply with --doc; give --query or --doc or --jsonl");
    refuses(EMBED, [tiny, "--doc", "a", "--doc", "b"], "--doc: given twice; it takes one value");
    refuses(EMBED, [tiny, "--doc", "d", "--max-new-tokens", "4"], "--max-new-tokens: does not apply with --doc");
    refuses(EMBED, [tiny, "--query", "q", "--batch-size", "2"], "--batch-size: applies only with --jsonl");
    refuses(EMBED, [tiny, "--jsonl", "-", "--no-reasoning"], "--no-reasoning: applies only with --query");
    refuses(EMBED, [tiny, "--jsonl", "-", "--batch-size", "0"], '--batch-size must be an integer from 1 to 64, got "0"');
    const jsonl = parseArgs(EMBED, [tiny, "--jsonl", "-", "--max-new-tokens", "4"]).flags;
    assert.deepEqual([jsonl.jsonl, jsonl["batch-size"], jsonl["max-new-tokens"]], ["-", DEFAULT_BATCH_SIZE, 4], "the default batch size is the library's");
    refuses(EMBED, [tiny, "--doc", "d", "--no-reasoning"], "--no-reasoning: applies only with --query");
    refuses(EMBED, [tiny, "--query", "q", "--no-reasoning", "--max-new-tokens", "4"], "--max-new-tokens: does not apply with --no-reasoning");
    const { flags } = parseArgs(EMBED, [tiny, "--query", "q"]);
    assert.equal(flags["max-new-tokens"], DEFAULT_REASONING_TOKENS, "the CLI's default cap is the library's");
    assert.equal(flags["max-length"], 1024);
  });

  test("a flag that replaces an argument (--shape for MODEL_DIR), required flags, lists of ids", () => {
    assert.deepEqual(parseArgs(EXPORT_GGUF, ["--shape", "qwen2.5-0.5b", "out.gguf"]).positionals, { "OUT.gguf": "out.gguf" });
    assert.deepEqual(parseArgs(EXPORT_GGUF, [tiny, "out.gguf"]).positionals, { MODEL_DIR: tiny, "OUT.gguf": "out.gguf" });
    refuses(EXPORT_GGUF, ["--shape", "qwen2.5-0.5b", tiny, "out.gguf"], `MODEL_DIR: does not apply with --shape (got "${tiny}")`);
    refuses(EXPORT_GGUF, ["out.gguf"], "missing OUT.gguf");
    refuses(EXPORT_GGUF, [tiny, "out.gguf", "--seed", "2"], "--seed: applies only with --shape");
    refuses(DUMP, [tiny], "--ids ID,ID,... is required");
    const dump = (argv: string[]) => {
      const { ids, "new-tokens": newTokens } = parseArgs(DUMP, [tiny, ...argv]).flags;
      return { ids, newTokens };
    };
    assert.deepEqual(dump(["--ids", "9707,11"]), { ids: [[9707, 11]], newTokens: 0 });
    assert.deepEqual(dump(["--ids", "9707,11", "--ids", "5", "--new-tokens", "3"]), { ids: [[9707, 11], [5]], newTokens: 3 }, "one list per --ids");
    assert.equal(parseArgs(DUMP, [tiny, "--ids", "1", "--quant", "q4"]).flags.quant, "q4");
    refuses(DUMP, [tiny, "--ids", "1", "--quant", "q8,q4"], "--quant must be one of bf16, q8, q4, got \"q8,q4\"");
    assert.deepEqual(parseArgs(BENCH, ["--quant", "bf16, q4,q8"]).flags.quant, ["bf16", "q4", "q8"]);
    assert.deepEqual(parseArgs(BENCH, []).flags.quant, ["bf16"]);
    refuses(BENCH, ["--quant", "q8,q8"], "--quant: q8 is given twice");
    refuses(BENCH, ["--quant", "bf16,q5"], "--quant: \"q5\" is not one of bf16, q8, q4; did you mean q8?");
    refuses(BENCH, ["--quant", ","], "--quant must be a comma-separated list of bf16, q8, q4, got \",\"");
  });

  test("--help and -h anywhere before --, and each command's help shows every flag it reads and an example", () => {
    assert.equal(wantsHelp(["x", "-h"]), true);
    assert.equal(wantsHelp(["--prompt", "x", "--help"]), true);
    assert.equal(wantsHelp(["--", "--help"]), false);
    for (const { spec } of COMMANDS) {
      const help = helpText(spec);
      assert.ok(help.startsWith(`r3gpu ${spec.name}: ${spec.summary}\n`), spec.name);
      assert.match(help, new RegExp(`^usage: r3gpu ${spec.name}\\b`, "m"));
      for (const p of spec.positionals) assert.match(help, new RegExp(`^  ${p.name.replace(".", "\\.")} `, "m"), `${spec.name} ${p.name}`);
      for (const name of Object.keys(spec.flags)) assert.match(help, new RegExp(`^  (-\\w, )?--${name}\\b`, "m"), `${spec.name} --${name}`);
      assert.match(help, /^  -h, --help +print this help and exit$/m);
      for (const example of spec.examples) {
        assert.ok(help.includes(`  npx r3gpu ${example}\n`), `${spec.name}: ${example}`);
        assert.ok(example.startsWith(`${spec.name} `), `${spec.name}'s example runs ${spec.name}`);
      }
    }
    const evalHelp = helpText(COMMANDS.find((c) => c.spec.name === "eval")!.spec);
    assert.match(evalHelp, /--max-new-tokens N +the most tokens the model writes while reasoning/);
    assert.match(evalHelp, new RegExp(`default ${DEFAULT_REASONING_TOKENS}; not with --no-reasoning`));
  });

  test("every example in the help parses", () => {
    for (const { spec } of COMMANDS) {
      for (const example of spec.examples) {
        const argv = shellWords(example.replace(/ <<< .*$/, "")).slice(1);
        assertParses(spec, argv, example);
      }
    }
  });
});

/** Parses as a user would run it: only a usage error fails (a folder of the README's that is not here is fine). */
function assertParses(spec: CommandSpec<any, any>, argv: string[], what: string): void {
  try {
    parseArgs(spec, argv);
  } catch (e) {
    if (e instanceof UsageError) assert.fail(`${what}: ${e.message}`);
  }
}

/** Splits a command line as sh does, for the quoting the README uses ("..." and '...'). */
function shellWords(line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
}

describe("README", async () => {
  const readme = await readFile(join(repoRoot, "README.md"), "utf8");
  const command = (name: string) => COMMANDS.find((c) => c.spec.name === name)?.spec;

  test("every `npx r3gpu` line of its shell examples parses", () => {
    const lines = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1].split("\n"))
      .map((l) => l.replace(/\s+#.*$/, "").replace(/^.*&& /, "")).filter((l) => l.startsWith("npx r3gpu "));
    assert.ok(lines.length >= 10, `${lines.length} example lines`);
    for (const line of lines) {
      const [name, ...argv] = shellWords(line).slice(2);
      const spec = command(name);
      assert.ok(spec, `${line}: no command ${name}`);
      assertParses(spec, argv, line);
    }
  });

  test("every flag a command's table row names is one of that command's", () => {
    // Rows of one command each: not "`npx r3gpu chat`, `embed`, ...", which point elsewhere.
    const rows = readme.split("\n").filter((l) => /^\| `npx r3gpu [a-z-]+[ `]/.test(l) && !l.split(" | ")[0].includes("`, `"));
    assert.ok(rows.length >= 10, `${rows.length} rows`);
    for (const row of rows) {
      const name = /^\| `npx r3gpu ([a-z-]+)/.exec(row)![1];
      const spec = command(name);
      assert.ok(spec, `no command ${name}`);
      for (const [flag] of row.matchAll(/--[a-z][a-z-]*/g)) {
        assert.ok(flag.slice(2) in spec.flags, `the ${name} row names ${flag}, which ${name} does not have`);
      }
    }
  });

  test("the serve options paragraph names serve's flags", () => {
    const options = /^Options: [\s\S]*?\n\n/m.exec(readme);
    assert.ok(options);
    for (const [flag] of options[0].matchAll(/--[a-z][a-z-]*/g)) assert.ok(flag.slice(2) in command("serve")!.flags, flag);
  });
});

describe("the launcher's filter of Dawn's limit warnings", () => {
  const WARNINGS = [
    "Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\n",
    "Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\n",
  ];
  const through = (chunks: string[]) => {
    const f = new DawnWarningFilter();
    const out = chunks.map((c) => f.push(c));
    return { out, all: out.join("") + f.end() };
  };

  test("drops exactly the two lines, however the pipe splits them, and passes everything else", () => {
    const text = `${WARNINGS[0]}loading...\n${WARNINGS[1]}Warning: something else\nWarning: maxDynamicUniformBuffersPerPipelineLayout was fine\nr3gpu: done\n`;
    const want = "loading...\nWarning: something else\nWarning: maxDynamicUniformBuffersPerPipelineLayout was fine\nr3gpu: done\n";
    assert.equal(through([text]).all, want);
    for (const size of [1, 2, 7, 19, 64]) {
      const chunks = text.match(new RegExp(`[\\s\\S]{1,${size}}`, "g"))!;
      assert.equal(through(chunks).all, want, `chunks of ${size}`);
    }
  });

  test("a line that cannot be a warning passes at once, unbuffered (progress bars redraw with \\r, without \\n)", () => {
    const { out } = through(["\rloading [##....]", " 10%", "\rloading [####..] 50%", "\n", "War", "ning: maxDyn", "amic? no\n"]);
    assert.deepEqual(out, ["\rloading [##....]", " 10%", "\rloading [####..] 50%", "\n", "", "", "Warning: maxDynamic? no\n"]);
    assert.equal(through(["Warning: maxDynamic unfinished"]).all, "Warning: maxDynamic unfinished", "an unended line is kept");
  });
});
