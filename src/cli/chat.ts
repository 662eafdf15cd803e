// `r3gpu chat`: a conversation with a model, its replies streamed as they are generated. `--prompt` asks one
// question; otherwise each line of stdin is a turn, until `/exit` or the end of input.
import { createInterface } from "node:readline";
import { nodeGpu } from "../gpu/node.ts";
import { nodeModelDir } from "../io/node.ts";
import type { ChatMessage } from "../text/chat.ts";
import { Engine } from "../text/engine.ts";
import type { GenerateOptions } from "../text/generate.ts";
import type { ChatArgs } from "./commands.ts";
import { withLoadProgress } from "./progress.ts";
import { stderrIsTTY } from "./terminal.ts";

/**
 * The generation options the sampling flags ask for. `--temperature 0` is greedy and a positive one samples; so do
 * `--top-k`, `--top-p` and `--seed` alone, which would mean nothing otherwise. Without any of them the model's
 * generation_config.json decides.
 */
function samplingOptions(flags: ChatArgs["flags"]): GenerateOptions {
  const { temperature, "top-k": topK, "top-p": topP, "repetition-penalty": repetitionPenalty, seed, "max-tokens": maxNewTokens } = flags;
  let doSample: boolean | undefined;
  if (temperature !== undefined) doSample = temperature > 0;
  else if (topK !== undefined || topP !== undefined || seed !== undefined) doSample = true;
  const opts: GenerateOptions = { temperature, topK, topP, repetitionPenalty, seed, maxNewTokens, doSample };
  // The engine spreads these over the model's defaults, where an undefined value would erase a default.
  return Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
}

export async function chat({ positionals, flags }: ChatArgs): Promise<number> {
  const { device } = await nodeGpu();
  const engine = await withLoadProgress((onProgress) =>
    Engine.load(device, nodeModelDir(positionals.MODEL_DIR), { maxSeqLen: flags.context, onProgress }));
  if (!engine.chatTemplate) throw new Error(`${positionals.MODEL_DIR}: the tokenizer has no chat template, which chat needs`);
  const conversation = new Conversation(engine, flags.system, samplingOptions(flags));

  if (flags.prompt !== undefined) {
    await conversation.reply(flags.prompt);
    return 0;
  }
  const interactive = Boolean(process.stdin.isTTY);
  const lines = createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, prompt: "> " });
  if (interactive) {
    console.error("type a message and press Enter; /exit or Ctrl-D ends the chat");
    lines.prompt();
  }
  for await (const line of lines) {
    const text = line.trim();
    if (text === "/exit") break;
    if (text !== "") {
      try {
        await conversation.reply(line);
      } catch (e) {
        // A turn that does not fit is dropped; the conversation goes on.
        if (!(e instanceof TurnTooLong)) throw e;
        console.error(`r3gpu chat: ${e.message}`);
      }
    }
    if (interactive) lines.prompt();
  }
  lines.close();
  return 0;
}

class TurnTooLong extends Error {}

class Conversation {
  private readonly messages: ChatMessage[] = [];
  /** Tokens kept free for the reply when old turns must go to make room. */
  private readonly replyRoom: number;

  constructor(private readonly engine: Engine, system: string | undefined, private readonly options: GenerateOptions) {
    if (system !== undefined) this.messages.push({ role: "system", content: system });
    const maxNewTokens = options.maxNewTokens ?? engine.defaults.maxNewTokens ?? 256;
    this.replyRoom = Math.max(1, Math.min(maxNewTokens, Math.floor(engine.model.maxSeqLen / 2)));
  }

  /** Streams the reply to `user` to stdout and adds both to the conversation. */
  async reply(user: string): Promise<void> {
    this.messages.push({ role: "user", content: user });
    const ids = this.fit();
    const stream = this.engine.generateStream({ ids }, this.options);
    let next = await stream.next();
    for (; !next.done; next = await stream.next()) process.stdout.write(next.value);
    process.stdout.write("\n");
    const result = next.value;
    this.messages.push({ role: "assistant", content: result.text });
    if (stderrIsTTY()) {
      console.error(`(${result.ids.length} tokens, ${result.decodeTokPerS.toFixed(1)} tok/s, ${result.stopReason})`);
    }
  }

  /** The prompt ids of the conversation, after dropping the oldest exchanges that leave no room for a reply. */
  private fit(): number[] {
    const limit = this.engine.model.maxSeqLen - this.replyRoom;
    const firstTurn = this.messages[0].role === "system" ? 1 : 0;
    for (;;) {
      const text = this.engine.chatTemplate!.render(this.messages, { addGenerationPrompt: true });
      const ids = this.engine.tokenizer.encode(text);
      if (ids.length <= limit) return ids;
      if (this.messages.length - firstTurn <= 1) {
        this.messages.pop();
        throw new TurnTooLong(`the message is ${ids.length} tokens with its prompt, over the ${limit} that --context ` +
          `${this.engine.model.maxSeqLen} leaves beside ${this.replyRoom} for the reply`);
      }
      this.messages.splice(firstTurn, 2);
      console.error("r3gpu chat: the conversation outgrew --context; its oldest exchange was dropped");
    }
  }
}
