// Timing GPU work. One method per adapter, named in the output:
//   timestamp-query: GPU timestamps written just before and just after the work, so host-side submit
//     and completion latencies are left out;
//   wall-clock: host time from submit to the queue's completion, for adapters without timestamps.
// A measurement repeats the work enough times in one submission to outlast the timer's resolution
// (Dawn may quantize timestamps) and the per-submission overhead, over several such submissions.
import { Recorder } from "./recorder.ts";

export type TimingMethod = "timestamp-query" | "wall-clock";

export interface MeasureOptions {
  /** Timed submissions (see measure). */
  runs: number;
  /** Each timed submission repeats the work until it lasts about this long. */
  minSeconds: number;
}

/** Upper bound on repetitions per submission, which bounds host encoding time and memory. */
const MAX_REPS = 1 << 16;

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class GpuTimer {
  readonly method: TimingMethod;
  private queries?: { set: GPUQuerySet; resolve: GPUBuffer; readback: GPUBuffer };

  constructor(readonly device: GPUDevice) {
    this.method = device.features.has("timestamp-query") ? "timestamp-query" : "wall-clock";
    if (this.method === "timestamp-query") {
      this.queries = {
        set: device.createQuerySet({ label: "bench timestamps", type: "timestamp", count: 2 }),
        resolve: device.createBuffer({ label: "bench timestamps", size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }),
        readback: device.createBuffer({ label: "bench timestamps readback", size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }),
      };
    }
  }

  /** Seconds the device spends on the work `record` puts into one submission. */
  async time(record: (rec: Recorder) => void): Promise<number> {
    await this.device.queue.onSubmittedWorkDone();
    const rec = new Recorder(this.device);
    const q = this.queries;
    if (!q) {
      record(rec);
      const t0 = performance.now();
      rec.submit();
      await this.device.queue.onSubmittedWorkDone();
      return (performance.now() - t0) / 1000;
    }
    // Empty passes carry the timestamps, so the Recorder can open and close its own passes in between:
    // an empty pass's end-of-pass timestamp is taken once the work submitted before it has run.
    rec.encoder.beginComputePass({ timestampWrites: { querySet: q.set, endOfPassWriteIndex: 0 } }).end();
    record(rec);
    rec.submit();
    const enc = this.device.createCommandEncoder();
    enc.beginComputePass({ timestampWrites: { querySet: q.set, endOfPassWriteIndex: 1 } }).end();
    enc.resolveQuerySet(q.set, 0, 2, q.resolve, 0);
    enc.copyBufferToBuffer(q.resolve, 0, q.readback, 0, 16);
    this.device.queue.submit([enc.finish()]);
    await q.readback.mapAsync(GPUMapMode.READ);
    const [t0, t1] = new BigUint64Array(q.readback.getMappedRange());
    q.readback.unmap();
    return Number(t1 - t0) / 1e9;
  }

  /**
   * Seconds per repetition of `encode`: the median over runs, and the best (for peak rates, which other
   * load on the machine can only lower). Repetitions per submission are calibrated first by growing
   * them until one submission takes a quarter of minSeconds; this also warms the work up. A calibration
   * run that already lasts minSeconds at one repetition counts as the first run: such work is long
   * enough that warming up is lost in it, and running it again would only double the cost.
   */
  async measure(encode: (rec: Recorder) => void, opts: MeasureOptions): Promise<{ seconds: number; best: number }> {
    const timeReps = (reps: number) => this.time((rec) => { for (let i = 0; i < reps; i++) encode(rec); });
    let reps = 1;
    let t = await timeReps(reps);
    const samples = t >= opts.minSeconds ? [t] : [];
    while (t < opts.minSeconds / 4 && reps < MAX_REPS) {
      reps = Math.min(MAX_REPS, reps * Math.min(64, Math.max(2, Math.ceil(opts.minSeconds / 4 / Math.max(t, 1e-7)))));
      t = await timeReps(reps);
    }
    reps = Math.max(1, Math.min(MAX_REPS, Math.round(reps * Math.max(1, opts.minSeconds / t))));
    while (samples.length < opts.runs) samples.push((await timeReps(reps)) / reps);
    return { seconds: median(samples), best: Math.min(...samples) };
  }
}
