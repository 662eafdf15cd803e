// The tuner's cache as files, for Node and Deno: one JSON file per key under $R3GPU_CACHE_DIR, else
// $XDG_CACHE_HOME/r3gpu/tune, else ~/.cache/r3gpu/tune. A record that cannot be read is treated as absent.
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import type { TuneCache, TuneRecord } from "./cache.ts";

export function defaultTuneDir(): string {
  const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
  if (env.R3GPU_CACHE_DIR) return join(env.R3GPU_CACHE_DIR, "tune");
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "r3gpu", "tune");
}

export function fsTuneCache(dir = defaultTuneDir()): TuneCache {
  return {
    where: dir,
    async read(key) {
      try {
        return JSON.parse(await readFile(join(dir, `${key}.json`), "utf8")) as TuneRecord;
      } catch {
        return undefined;
      }
    },
    async write(key, record) {
      await mkdir(dir, { recursive: true });
      // Written whole under another name first, so that a reader never sees half a record.
      const tmp = join(dir, `${key}.${process.pid}.tmp`);
      await writeFile(tmp, JSON.stringify(record, null, 1));
      await rename(tmp, join(dir, `${key}.json`));
    },
  };
}
