// The one gate to a model's GPU work: continuous batching of generations, and other work run between its steps.
//
// Generations wait in a queue until a KV-cache slot is free; each step then feeds every running sequence its next
// token and every newly admitted sequence its whole prompt, in one forward call (packed, no padding), so sequences
// leave the batch when they finish and waiting ones join at the next step. Work given to `use` (an embedding, a
// golden check) runs between two steps, so no caller waits behind more than one step of the others.
import type { Qwen2Model, SequenceTokens } from "../model/qwen2.ts";
import type { GenerateResult } from "./generate.ts";
import type { GenerationSequence } from "./sequence.ts";

/** A generation admitted to the scheduler: its text as it comes, and its result. */
export interface GenerationHandle {
  /** Chunks of text in order (never half a character, never text a stop string might claim). */
  chunks: AsyncIterable<string>;
  result: Promise<GenerateResult>;
  /** Gives the generation up: it leaves the batch before its next token (its result says "aborted"). */
  cancel(): void;
}

interface Entry {
  seq: GenerationSequence;
  slot: number;
  /** Chunks not yet taken by the reader, and the reader waiting for one. */
  queue: string[];
  wake?: () => void;
  closed: boolean;
  resolve: (r: GenerateResult) => void;
  reject: (e: unknown) => void;
}

const schedulers = new WeakMap<Qwen2Model, Scheduler>();

function badId(ids: readonly number[], vocab: number): number {
  return ids.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= vocab);
}

export class Scheduler {
  private readonly waiting: Entry[] = [];
  private readonly running: Entry[] = [];
  private readonly work: { run: (slots: number[]) => Promise<unknown>; slots: number; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  private loop: Promise<void> | undefined;

  private constructor(readonly model: Qwen2Model) {}

  /** The model's scheduler (one per model, so that every caller shares its slots). */
  static of(model: Qwen2Model): Scheduler {
    let s = schedulers.get(model);
    if (!s) schedulers.set(model, (s = new Scheduler(model)));
    return s;
  }

  /** Generations running or waiting. */
  get pending(): number {
    return this.running.length + this.waiting.length;
  }

  /** Queues a generation. A prompt that cannot fit the model's KV cache is refused here, alone. */
  submit(seq: GenerationSequence): GenerationHandle {
    const entry: Entry = { seq, slot: -1, queue: [], closed: false, resolve: () => {}, reject: () => {} };
    const result = new Promise<GenerateResult>((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    // A reader that never looks at the chunks must not turn a rejection into an unhandled one.
    result.catch(() => {});
    const { maxSeqLen } = this.model;
    if (seq.maxNewTokens === 0) {
      this.close(entry, seq.end());
    } else if (seq.promptIds.length === 0) {
      this.fail(entry, new Error("generate: empty prompt (no token ids)"));
    } else if (badId(seq.promptIds, this.model.config.vocabSize) >= 0) {
      const i = badId(seq.promptIds, this.model.config.vocabSize);
      this.fail(entry, new Error(`generate: token id ${seq.promptIds[i]} at index ${i} is out of range: the vocabulary has ` +
        `${this.model.config.vocabSize} ids (0..${this.model.config.vocabSize - 1})`));
    } else if (seq.promptIds.length > maxSeqLen) {
      this.fail(entry, new Error(`generate: ${seq.promptIds.length} new tokens at position 0 exceed the KV cache of ${maxSeqLen} positions ` +
        `(raise maxSeqLen, up to max_position_embeddings ${this.model.config.maxPositionEmbeddings})`));
    } else {
      this.waiting.push(entry);
      this.kick();
    }
    return { chunks: this.reader(entry), result, cancel: () => seq.cancel() };
  }

  /**
   * Runs GPU work of the caller's between two steps of the running generations. With `slots` > 0 the work gets
   * KV-cache slots no generation holds (at least one, at most `slots`; it waits for a step to free one if need
   * be), which it may overwrite until it returns.
   */
  use<T>(run: (slots: number[]) => Promise<T>, slots = 0): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.work.push({ run, slots, resolve: resolve as (v: unknown) => void, reject });
      this.kick();
    });
  }

  private freeSlots(): number[] {
    const used = new Set(this.running.map((e) => e.slot));
    return [...Array(this.model.maxBatch).keys()].filter((s) => !used.has(s));
  }

  private kick(): void {
    this.loop ??= this.drive().finally(() => {
      this.loop = undefined;
      if (this.work.length > 0 || this.waiting.length > 0 || this.running.length > 0) this.kick();
    });
  }

  private async drive(): Promise<void> {
    while (this.work.length > 0 || this.waiting.length > 0 || this.running.length > 0) {
      const free = this.freeSlots();
      const at = this.work.findIndex((w) => w.slots === 0 || free.length > 0);
      if (at >= 0) {
        const [job] = this.work.splice(at, 1);
        await job.run(free.slice(0, job.slots)).then(job.resolve, job.reject);
        continue;
      }
      await this.step();
    }
  }

  /** One forward call: the next token of every running sequence and the prompts of those admitted now. */
  private async step(): Promise<void> {
    // Work waiting for a slot goes first once one is free; it is not admitted generations' to take.
    const reserved = this.work.length > 0 ? 1 : 0;
    const free = this.freeSlots();
    const admitted: Entry[] = [];
    while (this.waiting.length > 0 && free.length > reserved) {
      const entry = this.waiting.shift()!;
      if (entry.seq.aborted) {
        this.close(entry, entry.seq.end("aborted"));
        continue;
      }
      entry.slot = free.shift()!;
      this.model.resetSlot(entry.slot);
      admitted.push(entry);
    }
    const batch = [...this.running, ...admitted];
    if (batch.length === 0) return;
    const inputs: SequenceTokens[] = batch.map((e) => ({ slot: e.slot, ids: e.seq.pending === undefined ? e.seq.promptIds : [e.seq.pending] }));
    const t0 = performance.now();
    this.running.splice(0);
    let out;
    try {
      out = await this.model.forward(inputs, { logits: batch.map((e) => e.seq.hostLogits) });
    } catch (e) {
      // A failed step leaves the KV cache of every sequence in it undefined: all of them fail.
      for (const entry of batch) this.fail(entry, e);
      return;
    }
    const seconds = (performance.now() - t0) / 1000;
    batch.forEach((entry, i) => {
      const { seq } = entry;
      if (seq.pending === undefined) seq.prefillSeconds += seconds;
      else seq.decodeSeconds += seconds;
      const chunk = seq.accept(seq.choose(out[i].next, out[i].logits));
      if (seq.finished) this.close(entry, chunk);
      else {
        this.emit(entry, chunk);
        this.running.push(entry);
      }
    });
  }

  private emit(entry: Entry, chunk: string): void {
    if (chunk) entry.queue.push(chunk);
    entry.wake?.();
  }

  private close(entry: Entry, chunk: string): void {
    this.emit(entry, chunk);
    entry.closed = true;
    entry.wake?.();
    entry.resolve(entry.seq.result());
  }

  private fail(entry: Entry, e: unknown): void {
    entry.closed = true;
    entry.wake?.();
    entry.reject(e);
  }

  private async *reader(entry: Entry): AsyncGenerator<string> {
    for (;;) {
      if (entry.queue.length > 0) {
        yield entry.queue.shift()!;
        continue;
      }
      if (entry.closed) return;
      await new Promise<void>((wake) => { entry.wake = wake; });
      entry.wake = undefined;
    }
  }
}
