// The targets by name. File targets are loaded on demand, so that a case's child process imports only its own
// (the model targets bring in the GPU module, the tokenizer target the tokenizer and template libraries).
import type { HttpTarget } from "./http.ts";
import type { FileTarget } from "./types.ts";

export const FILE_TARGETS: Record<string, () => Promise<FileTarget>> = {
  safetensors: async () => (await import("./safetensors.ts")).safetensorsTarget,
  config: async () => (await import("./config.ts")).configTarget,
  shards: async () => (await import("./shards.ts")).shardsTarget,
  tokenizer: async () => (await import("./tokenizer.ts")).tokenizerTarget,
  selftest: async () => (await import("./selftest.ts")).selftestTarget,
};

export const HTTP_TARGETS: Record<string, () => Promise<HttpTarget>> = {
  http: async () => (await import("./http.ts")).httpTarget,
};

/** What `npm run fuzz` runs unless --targets says otherwise. */
export const DEFAULT_TARGETS = ["safetensors", "config", "shards", "tokenizer", "http"];
