// `r3gpu chat`: a conversation with a model, its replies streamed as they are generated. `--prompt` asks one
// question; otherwise each line of stdin is a turn, until `/exit` or the end of input. A reply ends at the tokenizer's
// EOS or the chat template's end-of-turn token (<|im_end|>), as in the server. Ctrl-C stops the reply being
// generated; at the prompt, or while a stopped reply is still ending, it ends the chat.
import { createInterface, type Interface } from "node:readline";
import { nodeGpu } from "../gpu/node.ts";
import { nodeModelDir } from "../io/node.ts";
import type { ChatMessage } from "../text/chat.ts";
import { Engine } from "../text/engine.ts";
import type { GenerateOptions, StopReason } from "../text/generate.ts";
import { suggestion } from "./args.ts";
import type { ChatArgs } from "./commands.ts";
import { withLoadProgress } from "./load.ts";
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

/**
 * The ids that end an assistant turn: the tokenizer's EOS and the special token that the chat template writes after an
 * assistant message (found by rendering one), which config.json's eos_token_id may not list (Qwen2.5 lists
 * <|endoftext|>, while its template ends turns with <|im_end|>).
 */
function endOfTurnIds(engine: Engine): number[] {
  const { tokenizer, chatTemplate } = engine;
  const ids = new Set(tokenizer.eosTokenId === undefined ? [] : [tokenizer.eosTokenId]);
  const content = "r3gpu-assistant-content";
  const rendered = chatTemplate!.render([{ role: "user", content: "Hi" }, { role: "assistant", content }]);
  const after = rendered.indexOf(content);
  const [next] = after < 0 ? [] : tokenizer.encode(rendered.slice(after + content.length));
  // A special token (one that decoding can skip), not text such as "\n" that a reply may well contain.
  if (next !== undefined && tokenizer.decode([next], { skipSpecialTokens: true }) === "") ids.add(next);
  return [...ids];
}

const SLASH_COMMANDS: Record<string, string> = {
  "/help": "list these commands",
  "/clear": "forget the conversation so far (the system prompt stays)",
  "/exit": "end the chat (as do Ctrl-D and, at the prompt, Ctrl-C)",
};
const HELP = `${Object.entries(SLASH_COMMANDS).map(([c, what]) => `  ${c.padEnd(8)}${what}`).join("\n")}\n` +
  "Anything else is a message to the model. Ctrl-C stops a reply while it is generated.";

export async function chat({ positionals, flags }: ChatArgs): Promise<number> {
  const { device } = await nodeGpu();
  const engine = await withLoadProgress(flags, (load) =>
    Engine.load(device, nodeModelDir(positionals.MODEL_DIR), { maxSeqLen: flags.context, ...load }));
  if (!engine.chatTemplate) throw new Error(`${positionals.MODEL_DIR}: the tokenizer has no chat template, which chat needs`);
  const conversation = new Conversation(engine, flags.system, { ...samplingOptions(flags), stopIds: endOfTurnIds(engine) });

  let lines: Interface | undefined;
  let code = 0;
  const interrupt = () => {
    if (conversation.stop()) return;
    // Nothing to stop: Ctrl-C at the prompt, or a second one while the stopped reply ends, ends the chat (as a
    // shell does for Ctrl-C, exit code 128 + SIGINT).
    code = 130;
    lines?.close();
  };
  process.on("SIGINT", interrupt);
  try {
    if (flags.prompt !== undefined) {
      // Stopped, the one reply is all there is: the chat ends as interrupted.
      return (await conversation.reply(flags.prompt)) === "aborted" ? 130 : 0;
    }
    const interactive = Boolean(process.stdin.isTTY);
    lines = createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, prompt: "> " });
    // On a terminal readline reads Ctrl-C as a key, so no signal comes; it says so with this event instead.
    lines.on("SIGINT", interrupt);
    if (interactive) {
      console.error("type a message and press Enter; /help lists the commands, /exit or Ctrl-D ends the chat");
      lines.prompt();
    }
    for await (const line of lines) {
      if (code !== 0) break;
      const text = line.trim();
      if (/^\/[a-z]+$/.test(text)) {
        if (text === "/exit") break;
        if (text === "/help") console.error(HELP);
        else if (text === "/clear") {
          conversation.clear();
          console.error("(a new conversation)");
        } else console.error(`r3gpu chat: unknown command ${text}${suggestion(text, Object.keys(SLASH_COMMANDS))} (/help lists them)`);
      } else if (text !== "") {
        try {
          await conversation.reply(line);
        } catch (e) {
          // A turn that does not fit is dropped; the conversation goes on.
          if (!(e instanceof TurnTooLong)) throw e;
          console.error(`r3gpu chat: ${e.message}`);
        }
      }
      if (interactive && code === 0) lines.prompt();
    }
    return code;
  } finally {
    lines?.close();
    process.off("SIGINT", interrupt);
  }
}

class TurnTooLong extends Error {}

class Conversation {
  private readonly messages: ChatMessage[] = [];
  /** Tokens kept free for the reply when old turns must go to make room. */
  private readonly replyRoom: number;
  /** Set while a reply is generated. */
  private generating?: AbortController;

  constructor(private readonly engine: Engine, system: string | undefined, private readonly options: GenerateOptions) {
    if (system !== undefined) this.messages.push({ role: "system", content: system });
    const maxNewTokens = options.maxNewTokens ?? engine.defaults.maxNewTokens ?? 256;
    this.replyRoom = Math.max(1, Math.min(maxNewTokens, Math.floor(engine.model.maxSeqLen / 2)));
  }

  /** Streams the reply to `user` to stdout and adds both to the conversation (a stopped reply as far as it got). */
  async reply(user: string): Promise<StopReason> {
    this.messages.push({ role: "user", content: user });
    const ids = this.fit();
    this.generating = new AbortController();
    const stream = this.engine.generateStream({ ids }, { ...this.options, signal: this.generating.signal });
    let next = await stream.next();
    for (; !next.done; next = await stream.next()) process.stdout.write(next.value);
    this.generating = undefined;
    process.stdout.write("\n");
    const result = next.value;
    this.messages.push({ role: "assistant", content: result.text });
    if (result.stopReason === "aborted") console.error("(stopped; Ctrl-C at the prompt ends the chat)");
    if (stderrIsTTY()) {
      console.error(`(${result.ids.length} tokens, ${result.decodeTokPerS.toFixed(1)} tok/s, ${result.stopReason})`);
    }
    return result.stopReason;
  }

  /** Stops the reply being generated; false when there is none, or it is already stopping. */
  stop(): boolean {
    if (!this.generating || this.generating.signal.aborted) return false;
    this.generating.abort();
    return true;
  }

  /** Forgets every turn but the system prompt. */
  clear(): void {
    this.messages.splice(this.messages[0]?.role === "system" ? 1 : 0);
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
