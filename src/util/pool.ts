// Running n tasks with at most `width` in flight, a new one starting as each finishes; results in task order.
export async function inBatches<T>(n: number, width: number, task: (index: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, worker));
  return out;
}
