// The lines of a stream, in batches for a model to run together, taken as they arrive: a batch is whatever has come
// in (up to `size` lines) when the model is free for it, so a file or a fast pipe fills every batch while a person
// typing at stdin gets each line answered without waiting for the others. At most about two batches are read ahead
// of the model (the stream is paused beyond that), so a large input is never all in memory.
import type { Readable } from "node:stream";
import { createInterface } from "node:readline";

export interface NumberedLine {
  /** 1-based, counting every line of the input (blank ones included). */
  number: number;
  text: string;
}

/** Batches of the input's non-blank lines, in order; a read error of the input ends it with that error. */
export async function* lineBatches(input: Readable, size: number): AsyncGenerator<NumberedLine[]> {
  const lines = createInterface({ input, crlfDelay: Infinity });
  const queue: NumberedLine[] = [];
  let count = 0;
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  lines.on("line", (text) => {
    count++;
    if (text.trim() === "") return;
    queue.push({ number: count, text });
    if (queue.length >= 2 * size) lines.pause();
    notify();
  });
  lines.on("close", () => {
    ended = true;
    notify();
  });
  lines.on("error", (e) => {
    failure ??= e;
    ended = true;
    notify();
  });
  try {
    for (;;) {
      while (queue.length === 0 && !ended) await new Promise<void>((resolve) => (wake = resolve));
      if (queue.length === 0) break;
      const batch = queue.splice(0, size);
      if (queue.length < 2 * size) lines.resume();
      yield batch;
    }
    if (failure !== undefined) throw failure;
  } finally {
    lines.close();
  }
}
