// `r3gpu bench` and `r3gpu profile`: command-line front ends of the harness in bench/.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { isPeerName, PEERS, type PeerName } from "../bench/peers.ts";
import { formatBench, formatProfile } from "../bench/report.ts";
import { missedTargets, runBench, runProfile } from "../bench/run.ts";
import { nodeGpu } from "../gpu/node.ts";
import { isQwen25Shape, QWEN25_SHAPES } from "../model/shapes.ts";
import type { UploadProgress } from "../model/weights.ts";
import { UsageError } from "./args.ts";
import { Progress } from "./progress.ts";

const DEFAULT_SHAPE = "qwen2.5-0.5b";

function flags<O extends NonNullable<ParseArgsConfig["options"]>>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true } as const);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function checkShape(shape: string): string {
  if (isQwen25Shape(shape) || existsSync(join(shape, "config.json"))) return shape;
  throw new UsageError(`"${shape}" is neither a shape (${Object.keys(QWEN25_SHAPES).join(", ")}) nor a model folder with a config.json`);
}

function checkPeer(peer: string): PeerName {
  if (isPeerName(peer)) return peer;
  throw new UsageError(`unknown peer "${peer}" (known: ${PEERS.join(", ")})`);
}

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

export async function bench(args: string[]): Promise<number> {
  const { values, positionals } = flags(args, {
    shape: { type: "string", multiple: true },
    quick: { type: "boolean", default: false },
    json: { type: "string" },
    check: { type: "boolean", default: false },
    peer: { type: "string", multiple: true },
    "peer-timeout": { type: "string" },
    batch: { type: "string" },
  });
  if (positionals.length > 0) throw new UsageError(`bench takes no positional arguments (got ${positionals.join(" ")}); use --shape`);
  const shapes = (values.shape ?? [DEFAULT_SHAPE]).map(checkShape);
  const peers = [...new Set(values.peer ?? [])].map(checkPeer);
  const peerTimeoutS = values["peer-timeout"] === undefined ? undefined : Number(values["peer-timeout"]);
  if (peerTimeoutS !== undefined && !(peerTimeoutS > 0 && Number.isFinite(peerTimeoutS))) {
    throw new UsageError(`--peer-timeout must be a positive number of seconds, got "${values["peer-timeout"]}"`);
  }
  const batches = values.batch === undefined ? [] : values.batch.split(",").map((b) => {
    if (!/^\d+$/.test(b.trim()) || Number(b) < 1) throw new UsageError(`--batch: "${b}" is not a positive integer (give a list such as 1,4,8,16)`);
    return Number(b);
  });
  const { adapter, device } = await nodeGpu();
  const report = await runBench(adapter, device, {
    shapes, quick: values.quick!, command: ["r3gpu", "bench", ...args].join(" "), log, onLoadProgress: loadBars(), peers, peerTimeoutS, batches,
  });
  console.log(formatBench(report));
  if (values.json !== undefined) {
    writeFileSync(values.json, JSON.stringify(report, null, 2) + "\n");
    console.log(`\nwrote ${values.json}`);
  }
  if (!values.check) return 0;
  const missed = missedTargets(report);
  console.log(missed.length === 0 ? "\ncheck: every target met" : `\ncheck FAILED:\n${missed.map((m) => `  ${m}`).join("\n")}`);
  return missed.length === 0 ? 0 : 1;
}

export async function profile(args: string[]): Promise<number> {
  const { values, positionals } = flags(args, { shape: { type: "string" }, tokens: { type: "string", default: "128" } });
  if (positionals.length + (values.shape === undefined ? 0 : 1) !== 1) {
    throw new UsageError("profile takes either a MODEL_DIR or --shape S");
  }
  const tokens = Number(values.tokens);
  if (!Number.isInteger(tokens) || tokens < 1) throw new UsageError(`--tokens must be a positive integer, got "${values.tokens}"`);
  const shape = checkShape(values.shape ?? positionals[0]);
  const { adapter, device } = await nodeGpu();
  console.log(formatProfile(await runProfile(adapter, device, shape, tokens, { log, onLoadProgress: loadBars() })));
  return 0;
}
