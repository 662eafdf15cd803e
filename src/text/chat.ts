// Chat templates: a model's Jinja template rendered the way transformers' apply_chat_template does.
import { Template } from "@huggingface/jinja";
import type { TextTokenizer } from "./tokenizer.ts";

export interface ChatMessage {
  role: string;
  content: string;
  /** Templates may read more fields, e.g. an assistant message's tool_calls. */
  [key: string]: unknown;
}

export interface ChatOptions {
  /** Append the header of an assistant turn, so that generation continues as the assistant. */
  addGenerationPrompt?: boolean;
  bosToken?: string;
  eosToken?: string;
  /** Tool (function) schemas, as JSON-schema objects. */
  tools?: object[];
  /** Documents for retrieval-augmented templates. */
  documents?: object[];
  /** Further template variables, like extra keyword arguments to apply_chat_template. */
  variables?: Record<string, unknown>;
}

export class ChatTemplate {
  private readonly template: Template;

  /** `specialTokens`: what the template sees as bos_token, eos_token, ... unless the render options override them. */
  constructor(
    source: string,
    private readonly specialTokens: Readonly<Record<string, string | string[]>> = {},
  ) {
    this.template = new Template(source);
  }

  static fromTokenizer(tokenizer: TextTokenizer): ChatTemplate {
    if (tokenizer.chatTemplate === undefined) throw new Error("this model's tokenizer has no chat template");
    return new ChatTemplate(tokenizer.chatTemplate, tokenizer.specialTokens);
  }

  render(messages: readonly ChatMessage[], opts: ChatOptions = {}): string {
    const variables: Record<string, unknown> = { ...this.specialTokens, ...opts.variables };
    if (opts.bosToken !== undefined) variables.bos_token = opts.bosToken;
    if (opts.eosToken !== undefined) variables.eos_token = opts.eosToken;
    return this.template.render({
      ...variables,
      messages,
      // transformers passes None for these when absent, which templates test with `is none` / `is defined`.
      tools: opts.tools ?? null,
      documents: opts.documents ?? null,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
    });
  }
}

export function renderChat(template: string, messages: readonly ChatMessage[], opts: ChatOptions = {}): string {
  return new ChatTemplate(template).render(messages, opts);
}
