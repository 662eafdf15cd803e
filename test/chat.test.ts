import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, test } from "node:test";
import type { ModelDir } from "../src/io/files.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { ChatTemplate, renderChat, type ChatMessage } from "../src/text/chat.ts";
import { TextTokenizer } from "../src/text/tokenizer.ts";
import { goldenDir, qwenTokenizerDir, repoRoot } from "./shared-paths.ts";

interface Conversation {
  name: string;
  messages: ChatMessage[];
  add_generation_prompt: boolean;
  text: string;
  ids: number[];
  decoded: string;
}

const readJsonFile = async (path: string) => JSON.parse(await readFile(path, "utf8"));
const conversations: Conversation[] = await readJsonFile(join(goldenDir(), "tokenizer", "chat.json"));
const qwen = await TextTokenizer.load(nodeModelDir(qwenTokenizerDir()), { from: "vocab-merges" });
const chat = ChatTemplate.fromTokenizer(qwen);

describe("Qwen2.5 chat template", () => {
  for (const c of conversations) {
    test(c.name, () => {
      const text = chat.render(c.messages, { addGenerationPrompt: c.add_generation_prompt });
      assert.equal(text, c.text);
      assert.deepEqual(qwen.encode(text), c.ids);
      assert.equal(qwen.decode(c.ids), c.decoded);
    });
  }

  test("Search-R3 prompts of tiny-public", async () => {
    const tinyDir = join(goldenDir(), "tiny-public");
    const tiny = await TextTokenizer.load(nodeModelDir(tinyDir));
    const search = await readJsonFile(join(tinyDir, "search-golden.json"));
    const tinyChat = ChatTemplate.fromTokenizer(tiny);
    for (const q of search.queries) {
      const messages = [
        { role: "system", content: q.system },
        { role: "user", content: q.input },
      ];
      const prompt = tinyChat.render(messages, { addGenerationPrompt: true });
      assert.equal(prompt, q.prompt_text);
      assert.deepEqual(tiny.encode(prompt), q.prompt_ids);
    }
  });

  test("tools are listed in the system turn as Python's json.dumps writes them", () => {
    const tool = { type: "function", function: { name: "get_time", description: "Current time", parameters: {} } };
    const text = chat.render([{ role: "user", content: "Time?" }], { tools: [tool], addGenerationPrompt: true });
    const system = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
    assert.ok(text.startsWith(`${system}\n\n# Tools\n`));
    const json = '{"type": "function", "function": {"name": "get_time", "description": "Current time", "parameters": {}}}';
    assert.ok(text.includes(`<tools>\n${json}\n</tools>`));
    assert.ok(text.endsWith("<|im_start|>user\nTime?<|im_end|>\n<|im_start|>assistant\n"));
  });

  test("renderChat passes bos/eos tokens and add_generation_prompt", () => {
    const template =
      "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}{{ eos_token }}{% endfor %}" +
      "{% if add_generation_prompt %}>{% endif %}";
    const messages = [{ role: "user", content: "hi" }];
    const opts = { bosToken: "<s>", eosToken: "</s>", addGenerationPrompt: true };
    assert.equal(renderChat(template, messages, opts), "<s>user:hi</s>>");
    assert.equal(renderChat(template, messages), "user:hi");
  });

  test("a tokenizer without a chat template is an error", async () => {
    const dir = nodeModelDir(qwenTokenizerDir());
    const { chat_template: _, ...config } = JSON.parse(await dir.readText("tokenizer_config.json"));
    const noTemplate: ModelDir = {
      ...dir,
      readText: async (file) => (file === "tokenizer_config.json" ? JSON.stringify(config) : dir.readText(file)),
    };
    const tok = await TextTokenizer.load(noTemplate, { from: "vocab-merges" });
    assert.equal(tok.chatTemplate, undefined);
    assert.throws(() => ChatTemplate.fromTokenizer(tok), /no chat template/);
  });
});

describe("hostile chat templates", () => {
  const user = [{ role: "user", content: "hi" }];
  const origin = "m/tokenizer_config.json chat_template";
  const refuses = (template: string, pattern: RegExp) => {
    const started = Date.now();
    assert.throws(() => new ChatTemplate(template, {}, origin).render(user), (e: Error) => {
      assert.ok(e.message.startsWith(`${origin}: `), e.message);
      assert.match(e.message, pattern);
      return true;
    });
    // Each of these ran for minutes, or until memory ran out, before the bounds.
    assert.ok(Date.now() - started < 15_000, `refusing took ${Date.now() - started} ms`);
  };

  test("range() of more than jinja2's sandbox allows", () => {
    refuses("{% for i in range(10**7) %}x{% endfor %}", /range\(\) of 10000000 items is more than the 100000 allowed/);
    assert.equal(renderChat("{% for i in range(3, 10, 3) %}{{ i }},{% endfor %}{{ range(5) | length }}", user), "3,6,9,5");
    assert.equal(renderChat("{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}", user), "531");
  });

  test("loops that run too long, text and lists that grow too large", () => {
    refuses("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}x{% endfor %}{% endfor %}{% endfor %}",
      /rendering took more than 2000000 steps/);
    refuses("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
      /rendering made a string of more than 4194304 characters/);
    refuses("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
      /rendering made a list of more than 1048576 items/);
    refuses("{{ 'a\\nb' | indent(500000000) }}", /indent\(500000000\) of 2 lines would make a string of more than 4194304 characters/);
    refuses("{{ messages | tojson(indent=100000000) }}", /tojson\(indent=100000000\) is more than 64/);
    assert.equal(renderChat("{{ 'a\\nb' | indent(2) }}|{{ messages | tojson(indent=2) }}", user),
      'a\n  b|[\n  {\n    "role": "user",\n    "content": "hi"\n  }\n]');
  });

  test("syntax errors, nesting too deep and raise_exception name the template's file", () => {
    assert.throws(() => new ChatTemplate("{% for m in messages %}{{ m.content }", {}, origin), /^Error: m\/tokenizer_config\.json chat_template: the chat template does not parse: /);
    assert.throws(() => new ChatTemplate(`{{ ${"(".repeat(100_000)}1${")".repeat(100_000)} }}`, {}, origin),
      /m\/tokenizer_config\.json chat_template: the chat template does not parse: Maximum call stack size exceeded \(nested too deeply\)/);
    refuses("{{ raise_exception('Conversation roles must alternate') }}", /: Conversation roles must alternate$/);
  });

  test("the globals the library gives templates are all there, and a variable may not replace one", () => {
    const text = renderChat("{{ true }} {{ False }} {{ none is none }} {{ strftime_now('%Y-%m-%d') }} {{ namespace(a=1).a }}", user);
    assert.match(text, /^true false true \d{4}-\d{2}-\d{2} 1$/);
    assert.throws(() => renderChat("{{ range }}", user, { variables: { range: 1 } }), /chat template: Variable already declared: range/);
  });

  test("the template's file is named for a tokenizer's template", async () => {
    const tok = await TextTokenizer.load(nodeModelDir(qwenTokenizerDir()), { from: "vocab-merges" });
    assert.equal(tok.chatTemplateFile, "tokenizer_config.json");
    assert.throws(() => ChatTemplate.fromTokenizer(tok).render([{ role: "user", content: "hi", tool_calls: [{ function: { arguments: 5n } }] }]),
      /^Error: tokenizer_config\.json chat_template: /);
  });

  test("range(10**7) fails cleanly in a process with a 128 MB heap", () => {
    // A real bound, the child's heap: 10^7 items took 2.5 GB before range() was bounded.
    const script = `import { renderChat } from ${JSON.stringify(pathToFileURL(join(repoRoot, "dist/src/text/chat.js")).href)};
      try { renderChat("{% for i in range(10**7) %}x{% endfor %}", []); } catch (e) { console.log(e.message); }`;
    const run = spawnSync(process.execPath, ["--max-old-space-size=128", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /chat template: range\(\) of 10000000 items is more than the 100000 allowed/);
  });
});
