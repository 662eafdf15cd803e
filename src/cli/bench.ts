// `r3gpu bench` and `r3gpu profile`: command-line front ends of the harness in bench/.
import { writeFileSync } from "node:fs";
import { formatBench, formatProfile } from "../bench/report.ts";
import { missedTargets, runBench, runProfile } from "../bench/run.ts";
import { nodeGpu } from "../gpu/node.ts";
import type { UploadProgress } from "../model/weights.ts";
import type { BenchArgs, ProfileArgs } from "./commands.ts";
import { llamaCppMissing } from "../llamacpp/peer.ts";
import { quantOf } from "../model/quant.ts";
import { kernelOptions } from "./load.ts";
import { Progress } from "./progress.ts";

/** A progress bar per model load (a new one once the previous load is complete). */
function loadBars(): (p: UploadProgress) => void {
  let bar: Progress | undefined;
  return (p) => {
    bar ??= new Progress("loading");
    bar.update(p.bytes, p.totalBytes, "B");
    if (p.bytes >= p.totalBytes) {
      bar.done();
      bar = undefined;
    }
  };
}

const log = (line: string) => console.error(line);

export async function bench({ flags, argv }: BenchArgs): Promise<number> {
  // Said before r3gpu's own measurements, which take minutes, rather than in the peer's row after them.
  const missing = flags.peer?.includes("llama.cpp") ? llamaCppMissing() : undefined;
  if (missing) {
    console.error(`r3gpu bench --peer llama.cpp: ${missing}`);
    return 1;
  }
  const { adapter, device } = await nodeGpu();
  const report = await runBench(adapter, device, {
    shapes: flags.shape, quick: flags.quick, command: ["r3gpu", "bench", ...argv].join(" "), log, onLoadProgress: loadBars(),
    peers: [...new Set(flags.peer ?? [])], peerTimeoutS: flags["peer-timeout"], batches: flags.batch ?? [],
    kernels: kernelOptions(flags), quant: flags.quant,
  });
  console.log(formatBench(report));
  if (flags.json !== undefined) {
    writeFileSync(flags.json, JSON.stringify(report, null, 2) + "\n");
    console.log(`\nwrote ${flags.json}`);
  }
  if (!flags.check) return 0;
  const missed = missedTargets(report);
  console.log(missed.length === 0 ? "\ncheck: every target met" : `\ncheck FAILED:\n${missed.map((m) => `  ${m}`).join("\n")}`);
  return missed.length === 0 ? 0 : 1;
}

export async function profile({ positionals, flags }: ProfileArgs): Promise<number> {
  const { adapter, device } = await nodeGpu();
  const shape = flags.shape ?? positionals.MODEL_DIR!;
  console.log(formatProfile(await runProfile(adapter, device, shape, flags.tokens, { log, onLoadProgress: loadBars(),
    kernels: { ...kernelOptions(flags), quant: quantOf(flags.quant) } })));
  return 0;
}
