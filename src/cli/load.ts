// How the commands load a model: the weights quantized or not (--quant), the kernel variants the flags and
// R3GPU_KERNELS force, measured at load for the rest (cached under the user's cache folder, so a second run measures
// nothing) unless --no-tune, with a bar of the upload and of the measurement on a terminal.
import { quantOf } from "../model/quant.ts";
import type { LoadOptions } from "../model/qwen2.ts";
import type { UploadProgress } from "../model/weights.ts";
import { parseKernelList } from "../ops/kernel-variants.ts";
import { fsTuneCache } from "../tune/cache-fs.ts";
import { UsageError } from "./args.ts";
import type { KernelFlags } from "./commands.ts";
import { Progress } from "./progress.ts";

/** The load options of the kernel flags: R3GPU_KERNELS's slots, then --kernels's. */
export function kernelOptions(flags: Omit<KernelFlags, "quant">, onTune?: (done: number, total: number, what: string) => void): Pick<LoadOptions, "kernels" | "tune"> {
  let kernels;
  try {
    kernels = { ...parseKernelList(process.env.R3GPU_KERNELS ?? "", "R3GPU_KERNELS"), ...parseKernelList(flags.kernels ?? "", "--kernels") };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const tune = flags["no-tune"] ? false : { cache: fsTuneCache(), precision: flags.precision, onProgress: onTune };
  return { kernels, tune };
}

/** Runs a model load with bars of the weight bytes uploaded and of the kernel variants measured. */
export async function withLoadProgress<T>(flags: KernelFlags,
  load: (opts: Pick<LoadOptions, "kernels" | "tune" | "quant" | "onProgress">) => Promise<T>): Promise<T> {
  const upload = new Progress("loading");
  let tuning: Progress | undefined;
  try {
    return await load({
      onProgress: (p: UploadProgress) => upload.update(p.bytes, p.totalBytes, "B"),
      quant: quantOf(flags.quant),
      ...kernelOptions(flags, (done, total, what) => {
        if (!tuning) {
          upload.done();
          tuning = new Progress("tuning kernels");
        }
        tuning.update(done, total, "", what);
      }),
    });
  } finally {
    (tuning ?? upload).done();
  }
}
