import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { ModelDir } from "../src/io/files.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { ChatTemplate, renderChat, type ChatMessage } from "../src/text/chat.ts";
import { TextTokenizer } from "../src/text/tokenizer.ts";
import { goldenDir, qwenTokenizerDir } from "./shared-paths.ts";

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
