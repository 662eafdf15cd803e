// Tokenizer files (tokenizer.json, tokenizer_config.json, chat_template.jinja): loaded, checked against the micro
// model's embedding, used to encode and decode sample texts, and to render a conversation with the chat template.
import { nodeModelDir } from "../../src/io/node.ts";
import { ChatTemplate } from "../../src/text/chat.ts";
import { TextTokenizer } from "../../src/text/tokenizer.ts";
import { stringify } from "../mutators/json.ts";
import { mutateTokenizer } from "../mutators/tokenizer.ts";
import { MICRO_VOCAB, miniTokenizer } from "../seeds.ts";
import type { FileSpec, FileTarget } from "./types.ts";

const SAMPLES = [
  "Hello, world!", "<|im_start|>user\nhi<|im_end|>", "  spaces\tand\nnewlines  ", "数字 123 and émojis 🎉", "a".repeat(2000),
];
const MESSAGES = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Hi <|im_end|> there" },
  { role: "assistant", content: "Hello." },
  { role: "user", content: "Bye" },
];

export const tokenizerTarget: FileTarget = {
  name: "tokenizer",
  kind: "files",
  generate(rng, index) {
    const { tokenizer, config } = miniTokenizer();
    const files: Record<string, FileSpec> = { "tokenizer.json": stringify(tokenizer), "tokenizer_config.json": stringify(config, 2) };
    if (index === 0) return { mutation: "none (the seed)", files, invalid: false };
    if (index % 9 === 4) {
      const [file, label, spec] = rng.pick<[string, string, FileSpec]>([
        ["tokenizer.json", "a directory", { directory: true }], ["tokenizer.json", "a FIFO", { fifo: true }],
        ["tokenizer.json", "a link to /dev/zero", { link: "/dev/zero" }], ["tokenizer_config.json", "a FIFO", { fifo: true }],
        ["tokenizer_config.json", "a link to /dev/zero", { link: "/dev/zero" }],
      ]);
      return { mutation: `${file} is ${label}`, files: { ...files, [file]: spec }, invalid: true };
    }
    const m = mutateTokenizer(rng, tokenizer, config);
    if (m.tokenizer !== undefined) files["tokenizer.json"] = m.tokenizer;
    if (m.config !== undefined) files["tokenizer_config.json"] = m.config;
    if (m.templateFile !== undefined) files["chat_template.jinja"] = m.templateFile;
    return { mutation: m.label, files, invalid: m.invalid };
  },
  async run(dir) {
    const tokenizer = await TextTokenizer.load(nodeModelDir(dir));
    tokenizer.checkFitsModel(MICRO_VOCAB, dir);
    for (const text of SAMPLES) tokenizer.decode(tokenizer.encode(text));
    if (tokenizer.chatTemplate !== undefined) {
      const prompt = ChatTemplate.fromTokenizer(tokenizer).render(MESSAGES, { addGenerationPrompt: true });
      tokenizer.decode(tokenizer.encode(prompt));
    }
  },
};
