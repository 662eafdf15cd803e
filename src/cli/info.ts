// `r3gpu info --db DIR`: what an index holds, read without loading a model.
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { lockHolder } from "../search/lock.ts";
import { SearchIndex } from "../search/store.ts";
import type { InfoArgs } from "./commands.ts";

/** Bytes of the files under `dir`, at any depth (links not followed). */
async function sizeOnDisk(dir: string): Promise<number> {
  let bytes = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) bytes += await sizeOnDisk(path);
    else if (entry.isFile()) bytes += (await stat(path)).size;
  }
  return bytes;
}

const size = (bytes: number) => (bytes < 1 << 20 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / (1 << 20)).toFixed(1)} MiB`);

export async function info({ flags }: InfoArgs): Promise<number> {
  const { db } = flags;
  const settings = await SearchIndex.readSettings(db);
  if (!settings) throw new Error(`${db}: no index here (build one with \`r3gpu index\`)`);
  const index = await SearchIndex.open(db);
  const local = !db.includes("://");
  // Which run is indexing now (or was, if it died without removing its lock).
  const lock = (local && (await lockHolder(db))) || null;
  const { model, ...rest } = settings;
  const summary = {
    db,
    model,
    settings: rest,
    documents: await index.countDocuments(),
    chunks: await index.countChunks(),
    ann_index: await index.hasAnnIndex(),
    full_text_index: await index.hasFullTextIndex(),
    size_bytes: local ? await sizeOnDisk(db) : null,
    lock: lock && { ...lock.holder, running: lock.running },
  };
  if (flags.json) {
    console.log(JSON.stringify(summary));
    return 0;
  }
  const lines = [
    `index       ${db}${summary.size_bytes === null ? "" : `, ${size(summary.size_bytes)} on disk`}`,
    `documents   ${summary.documents} in ${summary.chunks} chunks`,
    `search      ${summary.ann_index ? "ANN index (IVF-HNSW-SQ)" : "exact scan (no ANN index)"}; ` +
      `${summary.full_text_index ? "full-text index (--hybrid)" : "no full-text index (run `r3gpu index` again for --hybrid)"}`,
    `model       ${model.name}: config.json ${model.configHash.slice(0, 16)}..., tokenizer ${model.tokenizerHash.slice(0, 16)}...`,
    ...model.weights.map((w) => `            ${w.file}: ${w.size} bytes, header ${w.header.slice(0, 16)}..., sampled data ${w.sample.slice(0, 16)}...`),
    `embeddings  ${rest.dimensions} dimensions, max length ${rest.maxLength}, chunks of ${rest.chunkTokens} tokens overlapping by ${rest.chunkOverlap}`,
    `prompts     document ${JSON.stringify(rest.documentSystem)}, query ${JSON.stringify(rest.querySystem)}, ` +
      `reasoning ${JSON.stringify(rest.reasoningSystem)}`,
    `            embed ${JSON.stringify(rest.embedPrompt)}, suffix ${JSON.stringify(rest.embedSuffix)}, token ${rest.embedToken}`,
  ];
  if (lock) {
    const { pid, host, started } = lock.holder;
    lines.push(lock.running ? `indexing    now, by process ${pid} on ${host} since ${started}`
      : `lock        left by process ${pid} (since ${started}), which no longer runs; the next \`r3gpu index\` takes it over`);
  }
  console.log(lines.join("\n"));
  return 0;
}
