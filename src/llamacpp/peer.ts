// llama.cpp as a benchmark peer: the same weights (a GGUF from `r3gpu export-gguf`), run by node-llama-cpp's
// prebuilt binaries on its Vulkan backend (the same adapter r3gpu uses: on a CPU-only machine that is
// lavapipe) or on its CPU backend.
//
// Each run happens in a child process (peer-worker.ts) that reports the prompt start and every token as
// they happen. A native evaluation cannot be interrupted, and on lavapipe llama.cpp's Vulkan backend can take
// minutes for a short prompt, so at the time limit the child is killed and the result says what was reached.
//
// node-llama-cpp is not one of r3gpu's own dependencies: its optional dependencies are prebuilt binaries for
// every platform, 538 MB of them CUDA builds that nothing here loads, and npm cannot leave out one package's
// optional dependencies. It lives in peers/llama.cpp with its own lockfile and only the Linux x64 CPU and
// Vulkan builds, installed by scripts/setup-llamacpp.sh when the peer is wanted.
import { fork } from "node:child_process";
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { WorkerMessage, WorkerRequest } from "./peer-worker.ts";

export interface LlamaCppPeerOptions {
  /** Path of the GGUF file. */
  gguf: string;
  /** "vulkan" for llama.cpp's Vulkan backend (every layer offloaded), false for its CPU backend. */
  gpu: "vulkan" | false;
  /** The prompt's token ids, or a count for a fixed synthetic prompt (ids 100..1096, valid in any vocabulary used here). */
  promptTokens: number | readonly number[];
  /** Single-token decode steps after the prompt; the run produces decodeTokens + 1 tokens (the first from the prompt). */
  decodeTokens: number;
  /** Wall-clock limit for the whole run, model loading and warm-up included. */
  timeoutMs: number;
  /**
   * CPU threads (default: the cores this process may use). node-llama-cpp's own default is at least 4, which on a
   * smaller machine oversubscribes it: llama.cpp's threads spin while they wait, and decode slows by orders of
   * magnitude. On a machine busy with other work, fewer threads are faster still.
   */
  threads?: number;
  /** KV cache element type (default F16, llama.cpp's default; F32 for comparisons against a float32 reference). */
  kvCacheType?: "F16" | "F32";
  /**
   * First evaluate the prompt and one decode step unmeasured (default true), so that GPU pipeline
   * compilation is not counted as prefill or decode time; its duration is reported as warmup_s.
   */
  warmup?: boolean;
}

export interface LlamaCppPeerResult {
  backend: "vulkan" | "cpu";
  /** GPU device names as llama.cpp sees them, or "CPU, N threads"; null if loading did not finish. */
  device: string | null;
  prompt_tokens: number;
  /** Prompt tokens per second: the prompt's evaluation up to its first token. Null if not reached. */
  prefill_tok_s: number | null;
  /** Decode steps per second over the steps completed. Null if none completed. */
  decode_tok_s: number | null;
  /** Decode steps completed (decodeTokens unless timed out or failed). */
  decode_steps: number;
  /** Seconds to load the backend and model and create the context. */
  load_s: number | null;
  /** Seconds of the unmeasured warm-up run (pipeline compilation on a GPU backend); null if none or not finished. */
  warmup_s: number | null;
  /** Greedy tokens produced: the prompt's next token, then one per decode step. */
  tokens: number[];
  timed_out: boolean;
  /** Why the run failed (the worker's error, or how it exited), if it did. */
  error?: string;
}

// The worker sits next to this module, compiled or not.
const WORKER = fileURLToPath(new URL(`./peer-worker${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url));
const STDERR_TAIL = 2000;

/** peers/llama.cpp/index.js, from src/llamacpp (run as TypeScript) or dist/src/llamacpp (compiled). */
export const LLAMACPP_ENTRY = ["../../peers/llama.cpp/index.js", "../../../peers/llama.cpp/index.js"]
  .map((up) => fileURLToPath(new URL(up, import.meta.url)))
  .find((p) => existsSync(p)) ?? fileURLToPath(new URL("../../../peers/llama.cpp/index.js", import.meta.url));

/** Why the peer cannot run here (node-llama-cpp not installed in peers/llama.cpp), or undefined when it can. */
export function llamaCppMissing(dir = dirname(LLAMACPP_ENTRY)): string | undefined {
  if (existsSync(join(dir, "node_modules", "node-llama-cpp", "package.json"))) return undefined;
  return `llama.cpp peer not installed: ${join(dir, "node_modules")} has no node-llama-cpp; ` +
    "run `bash scripts/setup-llamacpp.sh` in r3gpu's clone (node-llama-cpp 3.21.1 with its Linux x64 CPU and Vulkan builds, 164 MB)";
}
const EXIT_GRACE_MS = 5000;

function syntheticPrompt(n: number): number[] {
  return Array.from({ length: n }, (_, i) => 100 + ((i * 31) % 997));
}

/**
 * Runs llama.cpp on `gguf` once: loads it, evaluates the prompt, then decodes greedily. Never takes much
 * longer than timeoutMs; on timeout the figures cover what was reached and timed_out is true. Never throws
 * for a failed run (the result's `error` says why), so a benchmark table can still be printed.
 */
export async function runLlamaCppPeer(opts: LlamaCppPeerOptions): Promise<LlamaCppPeerResult> {
  const prompt = typeof opts.promptTokens === "number" ? syntheticPrompt(opts.promptTokens) : [...opts.promptTokens];
  if (prompt.length === 0) throw new Error("runLlamaCppPeer: the prompt needs at least one token");
  if (!Number.isInteger(opts.decodeTokens) || opts.decodeTokens < 0) throw new Error(`runLlamaCppPeer: decodeTokens must be a non-negative integer, got ${opts.decodeTokens}`);

  const result: LlamaCppPeerResult = {
    backend: opts.gpu || "cpu", device: null, prompt_tokens: prompt.length, prefill_tok_s: null, decode_tok_s: null,
    decode_steps: 0, load_s: null, warmup_s: null, tokens: [], timed_out: false,
  };
  const missing = llamaCppMissing();
  if (missing) return { ...result, error: missing };
  // llama.cpp's Vulkan backend skips CPU Vulkan devices such as lavapipe unless they are listed explicitly.
  const env = opts.gpu === "vulkan" ? { ...process.env, GGML_VK_VISIBLE_DEVICES: process.env.GGML_VK_VISIBLE_DEVICES ?? "0" } : process.env;
  const child = fork(WORKER, [], { env, execArgv: [], stdio: ["ignore", "ignore", "pipe", "ipc"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-STDERR_TAIL)));

  let start = 0;
  const at: number[] = [];
  let done = false;
  let signalDone: () => void;
  const finished = new Promise<"done">((resolve) => (signalDone = () => resolve("done")));
  child.on("message", (m: WorkerMessage) => {
    switch (m.type) {
      case "loaded":
        result.device = m.device;
        result.load_s = m.loadMs / 1000;
        break;
      case "warm":
        result.warmup_s = m.ms / 1000;
        break;
      case "start":
        start = m.at;
        break;
      case "token":
        result.tokens.push(m.token);
        at.push(m.at);
        break;
      case "done":
        done = true;
        signalDone();
        break;
      case "error":
        result.error = m.message;
        break;
    }
  });

  // "close" rather than "exit": it comes after the child's last IPC message and stderr output.
  const closed = new Promise<string>((resolve) => {
    child.on("close", (code, signal) => resolve(signal ? `signal ${signal}` : `exit code ${code}`));
    child.on("error", (e) => resolve(e.message));
  });
  const request: WorkerRequest = { entry: LLAMACPP_ENTRY, gguf: opts.gguf, gpu: opts.gpu, prompt, decodeTokens: opts.decodeTokens,
    threads: opts.threads ?? availableParallelism(), kvCacheType: opts.kvCacheType ?? "F16", warmup: opts.warmup ?? true };
  child.send(request);

  const timers: NodeJS.Timeout[] = [];
  const after = (ms: number) => new Promise<"timeout">((resolve) => timers.push(setTimeout(() => resolve("timeout"), ms)));
  let how = await Promise.race([closed, finished, after(opts.timeoutMs)]);
  // A finished worker should exit on its own; one that lingers (native threads still winding down) is not waited for.
  if (how === "done") how = await Promise.race([closed, after(EXIT_GRACE_MS)]);
  timers.forEach(clearTimeout);
  if (how === "timeout") {
    child.kill("SIGKILL");
    await closed;
    result.timed_out = !done;
  } else if (!done && result.error === undefined) {
    result.error = `llama.cpp worker stopped (${how}) before finishing${stderr.trim() ? `: ${stderr.trim()}` : ""}`;
  }

  if (at.length > 0) result.prefill_tok_s = prompt.length / ((at[0] - start) / 1000);
  result.decode_steps = Math.max(0, at.length - 1);
  if (at.length > 1) result.decode_tok_s = (at.length - 1) / ((at[at.length - 1] - at[0]) / 1000);
  return result;
}
