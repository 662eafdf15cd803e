// A queue of GPU jobs: at most `concurrency` run at once, the rest wait in arrival order. Jobs that run together
// share the GPU through the model's scheduler, which batches them (one generation per KV-cache slot). Waiting is
// bounded: past the bound a job is refused at once rather than left to time out.

/** The queue is full; `retryAfterSeconds` estimates when a slot frees up. */
export class QueueFullError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super("the GPU queue is full");
  }
}

/** A job given up by its caller (its signal fired) before or while it ran. */
export class JobAbortedError extends Error {
  constructor() {
    super("the request was cancelled");
  }
}

export type Work<T> = (signal: AbortSignal) => Promise<T>;

interface Job {
  start(): void;
}

export interface QueueStats {
  running: number;
  waiting: number;
  maxWaiting: number;
}

export class GpuQueue {
  private readonly waiting: Job[] = [];
  private running = 0;
  private idleWaiters: (() => void)[] = [];
  /** Moving average of job durations, for Retry-After. */
  private averageSeconds = 0.1;

  constructor(readonly maxWaiting: number, readonly concurrency = 1) {
    if (!Number.isInteger(maxWaiting) || maxWaiting < 0) throw new Error(`GpuQueue: maxWaiting must be an integer >= 0, got ${maxWaiting}`);
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`GpuQueue: concurrency must be an integer >= 1, got ${concurrency}`);
  }

  get stats(): QueueStats {
    return { running: this.running, waiting: this.waiting.length, maxWaiting: this.maxWaiting };
  }

  /**
   * Runs `work` once the GPU is free. Rejects with QueueFullError when maxWaiting jobs already wait, and with
   * JobAbortedError when `signal` fires while the job waits (it leaves the queue at once). A running job gets the
   * signal and is expected to stop at its next step; the next job starts only once it has settled.
   */
  run<T>(work: Work<T>, signal: AbortSignal): Promise<T> {
    if (signal.aborted) return Promise.reject(new JobAbortedError());
    if (this.running >= this.concurrency && this.waiting.length >= this.maxWaiting) {
      return Promise.reject(new QueueFullError(Math.max(1, Math.ceil((this.waiting.length + 1) * this.averageSeconds))));
    }
    return new Promise<T>((resolve, reject) => {
      const job: Job = {
        start: () => {
          signal.removeEventListener("abort", onAbort);
          this.running++;
          const t0 = performance.now();
          // Through a promise so that a job that throws synchronously still frees the GPU.
          new Promise<T>((done) => done(work(signal))).then(resolve, reject).finally(() => {
            this.averageSeconds = 0.8 * this.averageSeconds + 0.2 * (performance.now() - t0) / 1000;
            this.running--;
            this.next();
          });
        },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(job);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new JobAbortedError());
        this.notifyIdle();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(job);
      if (this.running < this.concurrency) this.next();
    });
  }

  /** Resolves once no job runs or waits. */
  idle(): Promise<void> {
    if (this.running === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private next(): void {
    const job = this.waiting.shift();
    if (job) job.start();
    else this.notifyIdle();
  }

  private notifyIdle(): void {
    if (this.running > 0 || this.waiting.length > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
