// Embedding requests batched across clients: what concurrent requests ask for waits while a batch runs, then goes
// into the next one together (up to maxBatchTokens prompt tokens, as text-embeddings-inference's --max-batch-tokens),
// packed into forward passes by SearchR3.encodeIds between the steps of any running generation. A request whose
// client has gone is dropped before its batch starts.
import type { SearchR3 } from "../search/searchr3.ts";
import { JobAbortedError } from "./queue.ts";

interface Pending {
  ids: readonly number[][];
  signal: AbortSignal;
  resolve: (v: Float32Array[]) => void;
  reject: (e: unknown) => void;
}

export class EmbeddingBatcher {
  private readonly waiting: Pending[] = [];
  private running: Promise<void> | undefined;
  /** Forward batches run so far, and the requests they served (for the tests and /metrics). */
  batches = 0;
  requests = 0;

  constructor(private readonly r3: SearchR3, readonly maxBatchTokens: number) {}

  /** The embeddings of prepared texts (SearchR3.prepare's ids), in order. */
  embed(ids: readonly number[][], signal: AbortSignal): Promise<Float32Array[]> {
    if (signal.aborted) return Promise.reject(new JobAbortedError());
    return new Promise((resolve, reject) => {
      this.waiting.push({ ids, signal, resolve, reject });
      this.running ??= this.drain().finally(() => { this.running = undefined; });
    });
  }

  private async drain(): Promise<void> {
    while (this.waiting.length > 0) {
      // Requests in arrival order until the token budget is spent; the first always goes, however long.
      const batch: Pending[] = [];
      let tokens = 0;
      while (this.waiting.length > 0) {
        const next = this.waiting[0];
        const n = next.ids.reduce((sum, ids) => sum + ids.length, 0);
        if (batch.length > 0 && tokens + n > this.maxBatchTokens) break;
        this.waiting.shift();
        if (next.signal.aborted) {
          next.reject(new JobAbortedError());
          continue;
        }
        batch.push(next);
        tokens += n;
      }
      if (batch.length === 0) continue;
      try {
        const vectors = await this.r3.encodeIds(batch.flatMap((p) => p.ids), { batchSize: this.r3.batchSize });
        this.batches++;
        this.requests += batch.length;
        let at = 0;
        for (const p of batch) {
          p.resolve(vectors.slice(at, at + p.ids.length));
          at += p.ids.length;
        }
      } catch (e) {
        for (const p of batch) p.reject(e);
      }
    }
  }
}
