// Engine: a loaded model with its tokenizer, chat template and the generation defaults of its folder.
import type { ModelDir } from "../io/files.ts";
import { asModelFolder, type ModelFolder } from "../model/folder.ts";
import { Qwen2Model, type LoadOptions } from "../model/qwen2.ts";
import { ChatTemplate } from "./chat.ts";
import {
  generate, generateBatch, generateBatchStream, generateStream, type BatchChunk, type GenerateOptions, type GenerateResult, type Prompt,
} from "./generate.ts";
import { TextTokenizer } from "./tokenizer.ts";

/** HF generation_config.json fields that set generation defaults. */
export function generationDefaults(json: Record<string, unknown>): GenerateOptions {
  const num = (key: string) => (typeof json[key] === "number" ? (json[key] as number) : undefined);
  const out: GenerateOptions = {};
  if (typeof json.do_sample === "boolean") out.doSample = json.do_sample;
  const fields: [keyof GenerateOptions, string][] = [
    ["temperature", "temperature"], ["topK", "top_k"], ["topP", "top_p"],
    ["repetitionPenalty", "repetition_penalty"], ["maxNewTokens", "max_new_tokens"],
  ];
  for (const [opt, key] of fields) {
    const v = num(key);
    if (v !== undefined) (out as Record<string, unknown>)[opt] = v;
  }
  return out;
}

export interface EngineLoadOptions extends LoadOptions {
  tokenizer?: TextTokenizer;
}

/** A loaded model with what generating text from it needs. */
export class Engine {
  constructor(
    readonly model: Qwen2Model,
    readonly tokenizer: TextTokenizer,
    /** Absent when the tokenizer has no chat template (raw-text and id prompts still work). */
    readonly chatTemplate: ChatTemplate | undefined,
    /** From generation_config.json; the options of each call override them. */
    readonly defaults: GenerateOptions = {},
  ) {}

  /** `opts.tokenizer`: one already loaded from the folder (e.g. to check it before uploading the weights). */
  static async load(device: GPUDevice, source: ModelDir | ModelFolder, opts: EngineLoadOptions = {}): Promise<Engine> {
    const { tokenizer: given, ...loadOpts } = opts;
    const folder = await asModelFolder(source);
    const tokenizer = given ?? await TextTokenizer.load(folder.dir);
    // Before the weights load: token ids past the embedding table would index outside it.
    tokenizer.checkFitsModel(folder.config.vocabSize, folder.dir.name);
    const model = await Qwen2Model.load(device, folder, loadOpts);
    const chatTemplate = tokenizer.chatTemplate === undefined ? undefined : ChatTemplate.fromTokenizer(tokenizer);
    return new Engine(model, tokenizer, chatTemplate, generationDefaults(folder.generationConfig));
  }

  /** Frees the model's GPU buffers; the engine is unusable afterwards. */
  destroy(): void {
    this.model.destroy();
  }

  generate(prompt: Prompt, opts: GenerateOptions = {}): Promise<GenerateResult> {
    return generate(this.model, this.tokenizer, prompt, this.options(opts));
  }

  generateStream(prompt: Prompt, opts: GenerateOptions = {}): AsyncGenerator<string, GenerateResult, undefined> {
    return generateStream(this.model, this.tokenizer, prompt, this.options(opts));
  }

  /** Many prompts at once, batched on the GPU (as many together as the model has slots); results in prompt order. */
  generateBatch(prompts: readonly Prompt[], opts: GenerateOptions | readonly GenerateOptions[] = {}): Promise<GenerateResult[]> {
    return generateBatch(this.model, this.tokenizer, prompts, Array.isArray(opts) ? opts.map((o) => this.options(o)) : this.options(opts as GenerateOptions));
  }

  /** The same, streamed: chunks tagged with their prompt's index; returns the results in prompt order. */
  generateBatchStream(prompts: readonly Prompt[], opts: GenerateOptions | readonly GenerateOptions[] = {}): AsyncGenerator<BatchChunk, GenerateResult[], undefined> {
    return generateBatchStream(this.model, this.tokenizer, prompts, Array.isArray(opts) ? opts.map((o) => this.options(o)) : this.options(opts as GenerateOptions));
  }

  private options(opts: GenerateOptions): GenerateOptions {
    return { chatTemplate: this.chatTemplate, ...this.defaults, ...opts };
  }
}
