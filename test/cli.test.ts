// The chat, embed (one text, and --jsonl), dump and tokenize commands run as a user runs them (node bin/r3gpu.js
// ...), checked against the golden files and against the library run in this process; help, usage errors and the
// launcher's handling of stderr and signals (with pipes, and on a terminal made by script(1)); and the model card
// example against its documented output.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { helpText } from "../src/cli/args.ts";
import { COMMANDS } from "../src/cli/commands.ts";
import { parseLine } from "../src/cli/embed.ts";
import { nodeGpu } from "../src/gpu/node.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { openSafetensors, readTensor } from "../src/model/safetensors.ts";
import { DEFAULT_REASONING_TOKENS, SearchR3 } from "../src/search/searchr3.ts";
import type { ChatMessage } from "../src/text/chat.ts";
import { Engine } from "../src/text/engine.ts";
import type { GenerateOptions } from "../src/text/generate.ts";
import { embeddedModelDir, goldenDir, qwenTokenizerDir, repoRoot } from "./shared-paths.ts";

const cli = join(repoRoot, "bin", "r3gpu.js");
const tinyDir = join(goldenDir(), "tiny-public");
const golden = JSON.parse(await readFile(join(tinyDir, "search-golden.json"), "utf8"));
const doc = await readFile(join(repoRoot, "README.md"), "utf8");
const cases: { text: string; ids: number[]; decoded: string }[] =
  JSON.parse(await readFile(join(goldenDir(), "tokenizer", "cases.json"), "utf8"));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `input` on stdin; stdout and stderr are pipes, as in a script. */
function r3gpu(args: string[], input = ""): Promise<Run> {
  const child = spawn(process.execPath, [cli, ...args], { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s) => (stderr += s));
  child.stdin.end(input);
  return new Promise((done, fail) => {
    child.on("error", fail);
    child.on("close", (code) => done({ code, stdout, stderr }));
  });
}

/** A running CLI whose output is collected as it comes, for tests that act on it while it runs. */
function start(args: string[]): { child: ChildProcess; out: { stdout: string; stderr: string }; closed: Promise<[number | null, string | null]> } {
  const child = spawn(process.execPath, [cli, ...args], { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] });
  const out = { stdout: "", stderr: "" };
  child.stdout!.setEncoding("utf8").on("data", (s) => (out.stdout += s));
  child.stderr!.setEncoding("utf8").on("data", (s) => (out.stderr += s));
  const closed = new Promise<[number | null, string | null]>((done) => child.on("close", (code, signal) => done([code, signal])));
  return { child, out, closed };
}

/** Waits for `condition`, failing with `what` after a minute. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (const deadline = Date.now() + 60_000; !condition();) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A copy of the tiny model (links to its files) with some files replaced. */
async function variant(t: TestContext, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "r3gpu-cli-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const f of await readdir(tinyDir)) if (!(f in files)) await symlink(join(tinyDir, f), join(dir, f));
  for (const [f, text] of Object.entries(files)) await writeFile(join(dir, f), text);
  return dir;
}

const QUERY_KEYS = ["text", "reasoning", "emitted_embed_token", "stop_reason", "truncated", "embedding", "timings"];

/** Max abs error within 1e-4 x max|ref| (shared/golden/README.md). */
function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length, what);
  let maxRef = 0;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  assert.ok(err <= 1e-4 * maxRef, `${what}: max abs error ${err} > 1e-4 x ${maxRef}`);
}

const { device } = await nodeGpu();
const engine = await Engine.load(device, nodeModelDir(tinyDir), { maxSeqLen: 4096 });
const r3 = new SearchR3(engine);
const reply = async (messages: ChatMessage[], opts: GenerateOptions) => (await engine.generate(messages, opts)).text;

describe("chat", () => {
  test("--prompt answers once, greedy as the model's generation_config.json says", async () => {
    const run = await r3gpu(["chat", tinyDir, "--prompt", "Hello!", "--max-tokens", "8"]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, (await reply([{ role: "user", content: "Hello!" }], { maxNewTokens: 8 })) + "\n");
  });

  test("--system and the sampling flags reach the generation", async () => {
    const run = await r3gpu(["chat", tinyDir, "--prompt", "Hello!", "--system", "You are terse.", "--max-tokens", "12",
      "--temperature", "0.8", "--top-k", "40", "--top-p", "0.9", "--repetition-penalty", "1.3", "--seed", "7"]);
    assert.equal(run.code, 0, run.stderr);
    const want = await reply([{ role: "system", content: "You are terse." }, { role: "user", content: "Hello!" }], {
      maxNewTokens: 12, doSample: true, temperature: 0.8, topK: 40, topP: 0.9, repetitionPenalty: 1.3, seed: 7,
    });
    assert.equal(run.stdout, want + "\n");
    const greedy = await reply([{ role: "user", content: "Hello!" }], { maxNewTokens: 12 });
    const seeded = await r3gpu(["chat", tinyDir, "--prompt", "Hello!", "--max-tokens", "12", "--seed", "7"]);
    assert.notEqual(seeded.stdout, greedy + "\n", "--seed alone samples");
  });

  test("interactive: each stdin line is a turn of one conversation, until /exit", async () => {
    const run = await r3gpu(["chat", tinyDir, "--max-tokens", "6"], "Hello!\n\nAnd then?\n/exit\nnever read\n");
    assert.equal(run.code, 0, run.stderr);
    const messages: ChatMessage[] = [{ role: "user", content: "Hello!" }];
    const first = await reply(messages, { maxNewTokens: 6 });
    messages.push({ role: "assistant", content: first }, { role: "user", content: "And then?" });
    const second = await reply(messages, { maxNewTokens: 6 });
    assert.equal(run.stdout, `${first}\n${second}\n`);
    assert.equal(run.stderr.replace(/^Warning: .*\n/gm, ""), "", "nothing but results when not on a terminal");
  });

  test("a conversation that outgrows --context loses its oldest exchange", async () => {
    const long = "word ".repeat(40).trim();
    const run = await r3gpu(["chat", tinyDir, "--max-tokens", "4", "--context", "100"], `${long}\n${long}\n`);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /outgrew --context; its oldest exchange was dropped/);
    const second = await reply([{ role: "user", content: long }], { maxNewTokens: 4 });
    assert.ok(run.stdout.endsWith(`\n${second}\n`), "the second turn is answered as if it were the first");

    const tooLong = await r3gpu(["chat", tinyDir, "--max-tokens", "4", "--context", "40"], `${long}\nHi\n`);
    assert.equal(tooLong.code, 0, tooLong.stderr);
    assert.match(tooLong.stderr, /r3gpu chat: the message is \d+ tokens with its prompt, over the 36 that --context 40 leaves/);
    assert.equal(tooLong.stdout, (await reply([{ role: "user", content: "Hi" }], { maxNewTokens: 4 })) + "\n", "the chat goes on");
    const oneShot = await r3gpu(["chat", tinyDir, "--max-tokens", "4", "--context", "40", "--prompt", long]);
    assert.equal(oneShot.code, 1);
  });

  test("/help, /clear and /exit are commands, not messages to the model", async () => {
    const run = await r3gpu(["chat", tinyDir, "--max-tokens", "6"], "Hello!\n/help\n/hepl\n/clear\nHello!\n/exit\nnever read\n");
    assert.equal(run.code, 0, run.stderr);
    const first = await reply([{ role: "user", content: "Hello!" }], { maxNewTokens: 6 });
    // After /clear the second "Hello!" is the first turn of a new conversation, so it gets the same reply.
    assert.equal(run.stdout, `${first}\n${first}\n`);
    assert.equal(run.stderr, "  /help   list these commands\n" +
      "  /clear  forget the conversation so far (the system prompt stays)\n" +
      "  /exit   end the chat (as do Ctrl-D and, at the prompt, Ctrl-C)\n" +
      "Anything else is a message to the model. Ctrl-C stops a reply while it is generated.\n" +
      "r3gpu chat: unknown command /hepl; did you mean /help? (/help lists them)\n" +
      "(a new conversation)\n");
  });

  test("a reply ends at the tokenizer's EOS and at the chat template's end-of-turn token", async (t) => {
    // The random model never writes <|im_end|>, so two copies of it name a token that it does write, the fourth of
    // its reply to "Hello!", as the EOS (tokenizer_config.json) or as what the template ends an assistant turn with
    // (a special token in tokenizer.json, and chat_template.jinja). The prompt of a first turn is the same in both.
    const full = await engine.generate([{ role: "user", content: "Hello!" }], { maxNewTokens: 12 });
    const { tokenizer } = engine;
    const k = 3;
    const stop = full.ids[k];
    const stopText = tokenizer.decode([stop]);
    assert.equal(tokenizer.tokenId(stopText), stop, `"${stopText}" is a vocabulary token`);
    assert.ok(!full.ids.slice(0, k).includes(stop));
    const want = tokenizer.decode(full.ids.slice(0, k)) + "\n";
    assert.notEqual(full.text + "\n", want, "without the stop the reply goes on");

    const config = JSON.parse(await readFile(join(tinyDir, "tokenizer_config.json"), "utf8"));
    const eos = await variant(t, { "tokenizer_config.json": JSON.stringify({ ...config, eos_token: stopText }) });
    const tokenizerJson = JSON.parse(await readFile(join(tinyDir, "tokenizer.json"), "utf8"));
    tokenizerJson.added_tokens.push({ id: stop, content: stopText, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    const template = config.chat_template.replace("message.content + '<|im_end|>' + '\\n'",
      `message.content + ('${stopText}' if message.role == 'assistant' else '<|im_end|>') + '\\n'`);
    assert.notEqual(template, config.chat_template);
    const turn = await variant(t, { "tokenizer.json": JSON.stringify(tokenizerJson), "chat_template.jinja": template });
    for (const dir of [eos, turn]) {
      const run = await r3gpu(["chat", dir, "--prompt", "Hello!", "--max-tokens", "12"]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, want, dir === eos ? "EOS" : "end of turn");
    }
  });

  test("Ctrl-C (SIGINT) stops the reply and the chat reads on; a second one at the prompt ends it with 130", async () => {
    const { child, out, closed } = start(["chat", tinyDir, "--max-tokens", "4000"]);
    child.stdin!.write("Hello!\n");
    await until(() => out.stdout.length > 0, "the reply to start");
    child.kill("SIGINT");
    await until(() => out.stderr.includes("(stopped; Ctrl-C at the prompt ends the chat)\n"), "the reply to stop");
    const stopped = out.stdout;
    assert.ok(stopped.endsWith("\n"));
    assert.ok(engine.tokenizer.encode(stopped).length < 4000, "the reply stopped before its limit");
    const head = stopped.slice(0, -1);
    const greedy = await reply([{ role: "user", content: "Hello!" }], { maxNewTokens: 60 });
    assert.ok(greedy.startsWith(head) || head.startsWith(greedy), "what streamed is the greedy reply");
    child.stdin!.write("/help\n");
    await until(() => out.stderr.includes("/clear"), "the answer to /help");
    assert.equal(out.stdout, stopped, "nothing more of the reply after it stopped");
    child.kill("SIGINT");
    assert.deepEqual(await closed, [130, null]);
    assert.doesNotMatch(out.stderr, /Warning/);
  });

  test("on a terminal: progress on stderr, Ctrl-C reaches both processes and only stops the reply", { skip: !existsSync("/usr/bin/script") && "no script(1) to make a terminal" }, async () => {
    // script(1) runs the command on a pseudo-terminal, which turns Ctrl-C (\x03) into SIGINT for the whole foreground
    // process group: the launcher and its child both get it, so the launcher must not pass it on, nor die of it.
    const quote = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
    const command = [process.execPath, cli, "chat", tinyDir, "--prompt", "Hello!", "--max-tokens", "4000"].map(quote).join(" ");
    const term = spawn("script", ["-qfec", command, "/dev/null"], { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] });
    let screen = "";
    term.stdout!.setEncoding("utf8").on("data", (s) => (screen += s));
    const closed = new Promise((done) => term.on("close", done));
    // The bar ends its line once the model is loaded; what follows is the reply.
    const bar = /loading \[#+\] 100%[^\n]*\n/;
    await until(() => bar.test(screen), "the load progress bar, drawn because stderr is a terminal");
    await until(() => screen.length > bar.exec(screen)!.index + bar.exec(screen)![0].length + 20, "the reply to stream");
    term.stdin!.write("\x03");
    assert.equal(await closed, 130);
    assert.match(screen, /\(stopped; Ctrl-C at the prompt ends the chat\)\r?\n\(\d+ tokens, [\d.]+ tok\/s, aborted\)/);
    assert.doesNotMatch(screen, /Warning/);
  });

});

describe("embed", () => {
  test("--doc prints {text, embedding, timings}, the golden normalized hidden state", async () => {
    const doc = golden.documents[0];
    const run = await r3gpu(["embed", tinyDir, "--doc", doc.input]);
    assert.equal(run.code, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    assert.deepEqual(Object.keys(out), ["text", "truncated", "embedding", "timings"]);
    assert.equal(out.text, doc.input);
    assert.equal(out.truncated, false);
    assertClose(out.embedding, doc.hidden_normalized, "document 0");
    assert.deepEqual(Object.keys(out.timings), ["load_s", "embed_s"]);
    for (const v of Object.values(out.timings)) assert.ok(typeof v === "number" && v >= 0);
    assert.equal(run.stderr, "", "no Dawn limit warnings: the launcher drops them, and there is nothing else to say");
  });

  test("--query --no-reasoning is the teacher-forced query embedding, reasoning null", async () => {
    const query = golden.queries[1];
    const run = await r3gpu(["embed", tinyDir, "--query", query.input, "--no-reasoning"]);
    assert.equal(run.code, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    assert.deepEqual(Object.keys(out), QUERY_KEYS);
    assert.equal(out.reasoning, null);
    assert.deepEqual([out.emitted_embed_token, out.stop_reason, out.truncated], [null, null, false]);
    assertClose(out.embedding, query.hidden_normalized, "query 1");
  });

  test("--query reasons first (the golden greedy tokens), then embeds what it wrote", async () => {
    const query = golden.queries[0];
    const run = await r3gpu(["embed", tinyDir, "--query", query.input, "--max-new-tokens", "16"]);
    assert.equal(run.code, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    assert.deepEqual(Object.keys(out), QUERY_KEYS);
    assert.equal(out.reasoning, query.greedy.text);
    // The random model never writes <|embed_token|>: the suffix was appended after the 16 tokens, and nothing was cut.
    assert.deepEqual([out.emitted_embed_token, out.stop_reason, out.truncated], [false, "length", false]);
    assert.deepEqual(Object.keys(out.timings), ["load_s", "reasoning_s", "reasoning_tokens", "embed_s"]);
    assert.equal(out.timings.reasoning_tokens, 16);
    const [want] = await r3.encode([query.prompt_text + query.greedy.text + r3.embedSuffix]);
    assertClose(out.embedding, want, "reasoned query 0");
    const norm = Math.hypot(...out.embedding);
    assert.ok(Math.abs(norm - 1) < 1e-5, `norm ${norm}`);
  });
});

describe("embed: what the JSON says about a reasoned query", () => {
  test("without --max-new-tokens the reasoning stops at the default cap, 256 tokens, and the suffix is appended", async () => {
    const query = golden.queries[0];
    const run = await r3gpu(["embed", tinyDir, "--query", query.input]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, "", "no warnings (Dawn's included): nothing was cut");
    const out = JSON.parse(run.stdout);
    assert.equal(DEFAULT_REASONING_TOKENS, 256);
    assert.equal(out.timings.reasoning_tokens, 256);
    assert.deepEqual([out.emitted_embed_token, out.stop_reason, out.truncated], [false, "length", false]);
    assert.ok(out.reasoning.startsWith(query.greedy.text), "the golden 16 tokens, then more");
  });

  test("a query cut to fit --max-length says so, and what generate returns is never cut again", async () => {
    const long = "word ".repeat(60).trim();
    const run = await r3gpu(["embed", tinyDir, "--query", long, "--max-length", "48", "--max-new-tokens", "4"]);
    assert.equal(run.code, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    assert.deepEqual([out.emitted_embed_token, out.stop_reason, out.truncated], [false, "length", true]);
    assert.match(run.stderr, /^warning: SearchR3: query 0 is \d+ tokens with its prompt, over the \d+ allowed \(maxLength 48\); cut the last \d+ of its 60 text tokens\n$/);
    const doc = await r3gpu(["embed", tinyDir, "--doc", long, "--max-length", "48"]);
    assert.equal(JSON.parse(doc.stdout).truncated, true);
  });
});

describe("embed --jsonl", () => {
  const [q0, q1, q2] = golden.queries;
  const [d0, d1, d2] = golden.documents;
  type How = "document" | "query" | "reasoned";
  // Documents and queries, with and without reasoning, mixed in one file; kind and reasoning given or left to default.
  const mixed: [object, How, any][] = [
    [{ text: d0.input }, "document", d0],
    [{ text: q1.input, kind: "query" }, "query", q1],
    [{ text: q0.input, kind: "query", reasoning: true }, "reasoned", q0],
    [{ text: d1.input, kind: "document", reasoning: false }, "document", d1],
    [{ text: q2.input, kind: "query", reasoning: false }, "query", q2],
    [{ text: q1.input, kind: "query", reasoning: true }, "reasoned", q1],
    [{ text: d2.input, kind: "document" }, "document", d2],
    [{ text: q0.input, kind: "query" }, "query", q0],
    [{ text: q2.input, kind: "query", reasoning: true }, "reasoned", q2],
  ];
  // A blank line (skipped) and a CRLF line ending among them.
  const file = mixed.map(([line], i) => JSON.stringify(line) + (i === 3 ? "\r\n" : i === 5 ? "\n\n" : "\n")).join("");
  /** What embedding a query reasoned about gives: its prompt, the golden 16 greedy tokens and the suffix, as --query does. */
  const reasonedEmbedding = async (q: any) => (await r3.encode([q.prompt_text + q.greedy.text + r3.embedSuffix]))[0];

  async function jsonlFile(t: TestContext, text: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "r3gpu-jsonl-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, "texts.jsonl"), text);
    return join(dir, "texts.jsonl");
  }

  for (const batchSize of [1, 3, mixed.length]) {
    test(`at --batch-size ${batchSize}: one line per input in input order, each the golden embedding in --doc/--query's format`, async (t) => {
      const path = await jsonlFile(t, file);
      const run = await r3gpu(["embed", tinyDir, "--jsonl", path, "--batch-size", String(batchSize), "--max-new-tokens", "16"]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stderr, "", "no warnings: nothing was cut");
      const outs = run.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
      assert.equal(outs.length, mixed.length);
      for (const [i, [, how, entry]] of mixed.entries()) {
        const out = outs[i];
        const what = `line ${i + 1} (${how})`;
        assert.equal(out.text, entry.input, what);
        assert.equal(out.truncated, false, what);
        if (how === "document") {
          assert.deepEqual(Object.keys(out), ["text", "truncated", "embedding", "timings"], what);
          assertClose(out.embedding, entry.hidden_normalized, what);
        } else if (how === "query") {
          assert.deepEqual(Object.keys(out), QUERY_KEYS, what);
          assert.deepEqual([out.reasoning, out.emitted_embed_token, out.stop_reason], [null, null, null], what);
          assertClose(out.embedding, entry.hidden_normalized, what);
        } else {
          assert.deepEqual(Object.keys(out), QUERY_KEYS, what);
          assert.equal(out.reasoning, entry.greedy.text, what);
          assert.deepEqual([out.emitted_embed_token, out.stop_reason, out.timings.reasoning_tokens], [false, "length", 16], what);
          assertClose(out.embedding, await reasonedEmbedding(entry), what);
        }
        assert.deepEqual(Object.keys(out.timings), how === "reasoned" ? ["load_s", "reasoning_s", "reasoning_tokens", "embed_s"] : ["load_s", "embed_s"], what);
      }
    });
  }

  test("- reads stdin, and a line is answered as it arrives, before the input ends", async () => {
    const { child, out, closed } = start(["embed", tinyDir, "--jsonl", "-"]);
    child.stdin!.write(JSON.stringify({ text: d0.input }) + "\n");
    await until(() => out.stdout.includes("\n"), "the first line's embedding, with stdin still open");
    assertClose(JSON.parse(out.stdout).embedding, d0.hidden_normalized, "line 1");
    child.stdin!.end(JSON.stringify({ text: q1.input, kind: "query" }) + "\n");
    assert.deepEqual(await closed, [0, null]);
    const lines = out.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 2);
    assertClose(JSON.parse(lines[1]).embedding, q1.hidden_normalized, "line 2");
  });

  test("a bad line stops the command with an error naming it, after the output of every line before it", async (t) => {
    const path = await jsonlFile(t, `${JSON.stringify({ text: d0.input })}\n${JSON.stringify({ text: q1.input, kind: "query" })}\n\n` +
      `{"text": "x", "kind": "querry"}\n${JSON.stringify({ text: d1.input })}\n`);
    const run = await r3gpu(["embed", tinyDir, "--jsonl", path]);
    assert.equal(run.code, 1);
    assert.equal(run.stderr, `r3gpu embed: ${path} line 4: "kind" must be "document" or "query", got "querry"\n`);
    const outs = run.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.equal(outs.length, 2, "the two lines before it, and nothing after");
    assertClose(outs[0].embedding, d0.hidden_normalized, "line 1");
    assertClose(outs[1].embedding, q1.hidden_normalized, "line 2");
  });

  test("what makes a line bad, each named with the line", () => {
    const bad: [string, RegExp | string][] = [
      ['{"text": ', /^not JSON: /],
      ['"just text"', 'expected a JSON object {"text": ..., "kind"?: ..., "reasoning"?: ...}, got "just text"'],
      ["[1]", 'expected a JSON object {"text": ..., "kind"?: ..., "reasoning"?: ...}, got [1]'],
      ['{"kind": "query"}', '"text" is missing'],
      ['{"text": 5}', '"text" must be a string, got 5'],
      ['{"text": " "}', '"text" is empty'],
      ['{"text": "a", "knd": "query"}', 'unknown key "knd"; did you mean kind? (a line holds "text", "kind" and "reasoning")'],
      ['{"text": "a", "kind": null}', '"kind" must be "document" or "query", got null'],
      ['{"text": "a", "kind": "query", "reasoning": "yes"}', '"reasoning" must be true or false, got "yes"'],
      ['{"text": "a", "reasoning": true}', '"reasoning": true applies only to "kind": "query"'],
    ];
    for (const [text, message] of bad) {
      assert.throws(() => parseLine({ number: 7, text }, "in.jsonl"), (e: Error) => {
        if (typeof message === "string") assert.equal(e.message, `in.jsonl line 7: ${message}`);
        else assert.match(e.message.replace("in.jsonl line 7: ", ""), message);
        return true;
      }, text);
    }
    assert.deepEqual(parseLine({ number: 1, text: '\uFEFF{"text": "a"}' }, "in.jsonl"), { text: "a", kind: "document", reasoning: false },
      "defaults, and a byte-order mark before the first line");
    assert.deepEqual(parseLine({ number: 2, text: '{"text": "a", "kind": "query", "reasoning": true}' }, "in.jsonl"), { text: "a", kind: "query", reasoning: true });
  });

  test("a --jsonl file that is missing or a folder is named before the model loads", async (t) => {
    const missing = join(tmpdir(), "r3gpu-no-such.jsonl");
    assert.deepEqual(await r3gpu(["embed", tinyDir, "--jsonl", missing]), { code: 1, stdout: "", stderr: `r3gpu embed: --jsonl ${missing}: no such file\n` });
    const folder = await mkdtemp(join(tmpdir(), "r3gpu-jsonl-"));
    t.after(() => rm(folder, { recursive: true, force: true }));
    assert.deepEqual(await r3gpu(["embed", tinyDir, "--jsonl", folder]),
      { code: 1, stdout: "", stderr: `r3gpu embed: --jsonl ${folder}: a folder, not a file of JSON lines\n` });
  });
});

describe("dump", () => {
  const sequences: any[] = JSON.parse(readFileSync(join(tinyDir, "golden.json"), "utf8")).sequences;
  const dump = async (args: string[]) => {
    const run = await r3gpu(["dump", tinyDir, ...args]);
    assert.equal(run.code, 0, run.stderr);
    return run.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
  };

  test("every --ids in one batch, in the order given: the golden values, and each line as the sequence dumped alone", async () => {
    // Ragged lengths (7, 1, 300, 33 tokens), not in golden order.
    const order = [1, 0, 3, 2];
    const lines = await dump([...order.flatMap((i) => ["--ids", sequences[i].input_ids.join(",")]), "--new-tokens", "20"]);
    assert.equal(lines.length, order.length);
    const file = await openSafetensors(await nodeModelDir(tinyDir).open("golden.safetensors"));
    try {
      for (const [k, i] of order.entries()) {
        const seq = sequences[i];
        const out = lines[k];
        const what = `line ${k + 1} (golden sequence ${i}, ${seq.length} tokens)`;
        assert.deepEqual(Object.keys(out), ["ids", "final_norm_hidden", "last_logits_top5", "greedy"], what);
        assert.deepEqual(out.ids, seq.input_ids, what);
        assert.equal(out.final_norm_hidden.length, seq.length, what);
        assertClose(out.final_norm_hidden.flat(), await readTensor(file.tensors.get(seq.tensors.final_norm_hidden)!), `${what}: final_norm_hidden`);
        const logits = await readTensor(file.tensors.get(seq.tensors.last_logits)!);
        assert.deepEqual(out.last_logits_top5.ids, seq.last_pos_top5_ids, `${what}: top-5 ids`);
        assertClose(out.last_logits_top5.logits, out.last_logits_top5.ids.map((id: number) => logits[id]), `${what}: top-5 logits`);
        assert.deepEqual(out.greedy, seq.greedy.new_tokens, `${what}: greedy`);

        const [alone] = await dump(["--ids", seq.input_ids.join(","), "--new-tokens", "20"]);
        assertClose(out.final_norm_hidden.flat(), alone.final_norm_hidden.flat(), `${what}: final_norm_hidden batched vs alone`);
        assert.deepEqual(out.last_logits_top5.ids, alone.last_logits_top5.ids, `${what}: top-5 ids batched vs alone`);
        assertClose(out.last_logits_top5.logits, alone.last_logits_top5.logits, `${what}: top-5 logits batched vs alone`);
        assert.deepEqual(out.greedy, alone.greedy, `${what}: greedy batched vs alone`);
      }
    } finally {
      await file.source.close();
    }
  });

  test("without --new-tokens every line's greedy list is empty", async () => {
    const lines = await dump(["--ids", sequences[1].input_ids.join(","), "--ids", sequences[0].input_ids.join(",")]);
    assert.deepEqual(lines.map((l) => [l.ids, l.greedy]), [[sequences[1].input_ids, []], [sequences[0].input_ids, []]]);
    assert.deepEqual(lines.map((l) => l.last_logits_top5.ids), [sequences[1].last_pos_top5_ids, sequences[0].last_pos_top5_ids]);
  });
});

describe("help, version, usage errors and model folders", () => {
  test("CMD --help prints that command's help (every flag it reads, an example) on stdout and exits 0; so does -h", async () => {
    for (const { spec } of COMMANDS) {
      const run = await r3gpu([spec.name, "--help"]);
      assert.equal(run.code, 0, `${spec.name}: ${run.stderr}`);
      assert.equal(run.stdout, helpText(spec), spec.name);
      assert.equal(run.stderr, "", spec.name);
    }
    const short = await r3gpu(["eval", tinyDir, "-h"]);
    assert.equal(short.code, 0);
    assert.match(short.stdout, /^usage: r3gpu eval MODEL_DIR --beir DIR \[flags\]$/m);
    assert.match(short.stdout, /^  --max-new-tokens N /m);
    assert.match(short.stdout, /^  npx r3gpu eval models\/tiny-qwen2 --beir /m);
    const help = await r3gpu(["help", "chat"]);
    assert.equal(help.stdout, helpText(COMMANDS.find((c) => c.spec.name === "chat")!.spec));
  });

  test("--version prints the package's version; no command prints the commands; a misspelt one is named", async () => {
    const pkg = JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8"));
    assert.deepEqual(await r3gpu(["--version"]), { code: 0, stdout: `r3gpu ${pkg.version}\n`, stderr: "" });
    const none = await r3gpu([]);
    assert.equal(none.code, 2);
    for (const { spec } of COMMANDS) assert.ok(none.stderr.includes(`  ${spec.name} `) && none.stderr.includes(spec.summary), spec.name);
    const typo = await r3gpu(["embd", tinyDir]);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /^r3gpu: unknown command "embd"; did you mean embed\?\n/);
  });

  test("a model folder that does not exist, is a file or has no config.json is named as just that (exit 1)", async (t) => {
    const empty = await mkdtemp(join(tmpdir(), "r3gpu-cli-"));
    t.after(() => rm(empty, { recursive: true, force: true }));
    for (const [dir, problem] of [["no/such/dir", "no such folder"], ["README.md", "not a folder"],
      [empty, "no config.json in this folder, so it is not a Hugging Face model folder"]]) {
      const run = await r3gpu(["embed", dir, "--doc", "hi"]);
      assert.deepEqual(run, { code: 1, stdout: "", stderr: `r3gpu embed: MODEL_DIR ${dir}: ${problem}\n` });
    }
  });

  test("a negative number where a value is valid is a value, not a flag: a question of \"-1\"", async () => {
    const run = await r3gpu(["search", tinyDir, "--db", join(tmpdir(), "r3gpu-no-such-db"), "-1"]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /r3gpu-no-such-db: no index here/);
  });
});

describe("the launcher (bin/r3gpu.js runs the command in a child whose stderr it filters)", () => {
  /** The pid of the launcher's child, the command itself (0 before it is started). */
  const childOf = (pid: number) => Number(readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim());
  /** Whether a process runs (an exited one may linger as a zombie until it is reaped). */
  const running = (pid: number) => existsSync(`/proc/${pid}`) && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));

  test("a signal sent to the launcher alone reaches the command; the launcher dies of what the command died of", async () => {
    const { child, out, closed } = start(["chat", tinyDir]);
    await until(() => childOf(child.pid!) > 0, "the command to start");
    const command = childOf(child.pid!);
    // A second leaves the launcher long past setting up its handlers, and chat, waiting for stdin, does not handle
    // SIGHUP: it ends of it.
    await sleep(1000);
    child.kill("SIGHUP");
    assert.deepEqual(await closed, [null, "SIGHUP"]);
    assert.equal(running(command), false);
    assert.equal(out.stderr, "");
  });

  test("a launcher killed with SIGKILL, which it cannot pass on, takes the command with it", async () => {
    const { child, closed } = start(["chat", tinyDir]);
    await until(() => childOf(child.pid!) > 0, "the command to start");
    const command = childOf(child.pid!);
    child.kill("SIGKILL");
    assert.deepEqual(await closed, [null, "SIGKILL"]);
    await until(() => !running(command), `the command (pid ${command}) to exit`);
  });
});

describe("tokenize", () => {
  const lines = (texts: string[]) => texts.map((text) => JSON.stringify({ text }) + "\n").join("");
  const parse = (stdout: string) => stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));

  test("JSON lines through the shared Qwen2.5 tokenizer give the golden ids and decoded text", async () => {
    const run = await r3gpu(["tokenize", qwenTokenizerDir()], lines(cases.map((c) => c.text)));
    assert.equal(run.code, 0, run.stderr);
    const out = parse(run.stdout);
    assert.equal(out.length, cases.length);
    out.forEach((o, i) => assert.deepEqual(o, { ids: cases[i].ids, decoded: cases[i].decoded }, `case ${i}`));
  });

  test("vocab.json + merges.txt + tokenizer_config.json alone are enough", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "r3gpu-tok-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    for (const f of ["vocab.json", "merges.txt", "tokenizer_config.json"]) await symlink(join(qwenTokenizerDir(), f), join(dir, f));
    const some = cases.filter((c, i) => i < 8 || c.text.includes("<|im_start|>"));
    const run = await r3gpu(["tokenize", dir], lines(some.map((c) => c.text)));
    assert.equal(run.code, 0, run.stderr);
    parse(run.stdout).forEach((o, i) => assert.deepEqual(o, { ids: some[i].ids, decoded: some[i].decoded }, `case ${i}`));
  });

  test("a line that is not {\"text\": string} is an error naming the line", async () => {
    const run = await r3gpu(["tokenize", qwenTokenizerDir()], '{"text": "ok"}\n{"txt": "no"}\n');
    assert.equal(run.code, 1);
    assert.equal(parse(run.stdout).length, 1);
    assert.match(run.stderr, /r3gpu tokenize: stdin line 2: expected a JSON object with a string "text"/);
  });
});

describe("usage errors exit 2 with the command's usage", () => {
  const cases: [string[], RegExp][] = [
    [["chat"], /missing MODEL_DIR/],
    [["chat", tinyDir, "--bogus"], /--bogus: unknown flag/],
    [["chat", tinyDir, "--temperature=-1"], /--temperature must be a number >= 0/],
    [["chat", tinyDir, "--top-p", "1.5"], /--top-p must be a number in \(0, 1\]/],
    [["chat", tinyDir, "--max-tokens", "0"], /--max-tokens must be an integer >= 1/],
    [["chat", tinyDir, "--prompt", " "], /--prompt is empty/],
    [["embed", tinyDir], /give --query or --doc/],
    [["embed", tinyDir, "--query", "q", "--doc", "d"], /--doc: does not apply with --query; give --query or --doc/],
    [["embed", tinyDir, "--doc", "d", "--no-reasoning"], /--no-reasoning: applies only with --query/],
    [["embed", tinyDir, "--doc", "d", "--max-length", "x"], /--max-length must be an integer >= 2/],
    [["tokenize"], /missing MODEL_DIR/],
    [["download"], /missing REPO_ID/],
    [["download", "not a/repo id"], /is not a repository id/],
    [["chat", tinyDir, "--promt", "hi"], /--promt: unknown flag; did you mean --prompt\?$/],
    [["chat", tinyDir, "--temperature", "-1"], /--temperature must be a number >= 0, got "-1"$/],
    [["chat", tinyDir, "--seed", "-5"], /--seed must be an integer from 0 to 4294967295, got "-5"$/],
    [["chat", tinyDir, "--system", "--prompt", "hi"], /--system: needs a value \(TEXT\); for one that starts with "-", write --system=--prompt$/],
    [["embed", tinyDir, "--doc", "a", "--doc", "b"], /--doc: given twice; it takes one value$/],
    [["embed", tinyDir, "--doc", "d", "--max-new-tokens", "4"], /--max-new-tokens: does not apply with --doc$/],
    [["embed", tinyDir, "--jsonl", "-", "--doc", "d"], /--jsonl: does not apply with --doc; give --query or --doc or --jsonl$/],
    [["embed", tinyDir, "--doc", "d", "--batch-size", "4"], /--batch-size: applies only with --jsonl$/],
    [["search", tinyDir, "--db", "db", "q", "--no-reasoning", "--max-new-tokens", "4"], /--max-new-tokens: does not apply with --no-reasoning$/],
    [["dump", tinyDir, "--ids", "1", "--new-tokens", ""], /--new-tokens must be an integer >= 0, got ""$/],
    [["dump", tinyDir, "--ids", "1", "--new-tokens", "0x10"], /--new-tokens must be an integer >= 0, got "0x10"$/],
    [["dump", tinyDir, "--ids", "1", "--new-tokens", "1e2"], /--new-tokens must be an integer >= 0, got "1e2"$/],
    [["eval", tinyDir, "--bier", "x"], /--bier: unknown flag; did you mean --beir\?$/],
  ];
  for (const [args, message] of cases) {
    test(args.join(" ").replace(tinyDir, "MODEL_DIR"), async () => {
      const run = await r3gpu(args);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, new RegExp(`^r3gpu ${args[0]}: .*${message.source}`, "m"));
      assert.match(run.stderr, new RegExp(`^usage: r3gpu ${args[0]} `, "m"));
      assert.equal(run.stdout, "");
      // One line naming the problem, then the command's usage (not the program's).
      const [line, blank, usage] = run.stderr.split("\n");
      assert.match(line, new RegExp(`^r3gpu ${args[0]}: .*${message.source}`));
      assert.deepEqual([blank, usage.startsWith(`usage: r3gpu ${args[0]} `)], ["", true]);
      assert.doesNotMatch(run.stderr, /^commands:$/m);
    });
  }
});

describe("README: the model card example", () => {
  const block = (info: string) => {
    const m = new RegExp("```" + info + "\\n([\\s\\S]*?)```").exec(doc);
    assert.ok(m, `no \`\`\`${info} block in README.md`);
    return m[1];
  };

  test("the documented code is examples/model-card.ts", async () => {
    assert.equal(block("ts model-card"), await readFile(join(repoRoot, "examples", "model-card.ts"), "utf8"));
  });

  test("it prints the documented output on the tiny model", async () => {
    const child = await new Promise<Run>((done, fail) => {
      const p = spawn(process.execPath, [join(repoRoot, "dist", "examples", "model-card.js"), embeddedModelDir(), "15"],
        { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      p.stdout.setEncoding("utf8").on("data", (s) => (stdout += s));
      p.stderr.setEncoding("utf8").on("data", (s) => (stderr += s));
      p.on("error", fail);
      p.on("close", (code) => done({ code, stdout, stderr }));
    });
    assert.equal(child.code, 0, child.stderr);
    const want = block("text model-card-output").split("\n");
    const got = child.stdout.split("\n");
    assert.equal(got.length, want.length, child.stdout);
    // Cosines are printed to 4 decimals; a last-digit difference from another GPU's rounding is allowed.
    const number = /-?\d+\.\d{4}/g;
    got.forEach((line, i) => {
      assert.equal(line.replace(number, "#"), want[i].replace(number, "#"), `line ${i + 1}`);
      const [g, w] = [line.match(number) ?? [], want[i].match(number) ?? []];
      g.forEach((x, j) => assert.ok(Math.abs(Number(x) - Number(w[j])) <= 1.5e-4, `line ${i + 1}: ${x} vs ${w[j]}`));
    });
  });
});
