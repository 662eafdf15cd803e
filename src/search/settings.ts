// What the embeddings of an index depend on (the model, its prompts, the chunking), so that an index can refuse
// writes and queries that would mix embeddings made another way.
import type { ModelIdentity } from "./model-identity.ts";
import type { SearchR3, SearchR3Options } from "./searchr3.ts";

/** What the embeddings in an index depend on; an index refuses writes and queries that would mix other ones. */
export interface IndexSettings {
  /** The model, by content (see identityDiff). */
  model: ModelIdentity;
  dimensions: number;
  maxLength: number;
  chunkTokens: number;
  chunkOverlap: number;
  embedToken: string;
  documentSystem: string;
  querySystem: string;
  reasoningSystem: string;
  embedPrompt: string;
  embedSuffix: string;
}

export interface Chunking {
  chunkTokens: number;
  chunkOverlap: number;
}

/**
 * Chunks fill maxLength once the document prompt is around them, and overlap by an eighth, unless `given` says
 * otherwise. A chunk re-tokenized inside the prompt can still come out a token longer where it merges with the text
 * around it; SearchR3 then cuts that token, with a warning.
 */
export function resolveChunking(r3: SearchR3, given: Partial<Chunking> = {}): Chunking {
  const chunkTokens = given.chunkTokens ?? r3.maxLength - r3.prepare("", "document").ids.length;
  if (chunkTokens < 1) throw new Error(`maxLength ${r3.maxLength} leaves no room for text in the document prompt`);
  return { chunkTokens, chunkOverlap: given.chunkOverlap ?? Math.floor(chunkTokens / 8) };
}

export function indexSettings(r3: SearchR3, model: ModelIdentity, chunking: Chunking): IndexSettings {
  return {
    model,
    dimensions: r3.engine.model.config.hiddenSize,
    maxLength: r3.maxLength,
    ...chunking,
    embedToken: r3.embedToken,
    documentSystem: r3.documentSystem,
    querySystem: r3.querySystem,
    reasoningSystem: r3.reasoningSystem,
    embedPrompt: r3.embedPrompt,
    embedSuffix: r3.embedSuffix,
  };
}

/** The SearchR3 options that embed queries (and documents) the way the index's documents were embedded. */
export function searchR3Options(settings: IndexSettings): SearchR3Options {
  const { maxLength, embedToken, documentSystem, querySystem, reasoningSystem, embedPrompt, embedSuffix } = settings;
  return { maxLength, embedToken, documentSystem, querySystem, reasoningSystem, embedPrompt, embedSuffix };
}

/** "key: stored X, given Y" for each setting but the model (see identityDiff) that differs. */
export function settingsDiff(stored: IndexSettings, given: IndexSettings): string[] {
  return (Object.keys(stored) as (keyof IndexSettings)[])
    .filter((key) => key !== "model" && given[key] !== stored[key])
    .map((key) => `${key}: index has ${JSON.stringify(stored[key])}, this run ${JSON.stringify(given[key])}`);
}
