// /search over a LanceDB index built by `r3gpu index`: queries are embedded with the prompts and max_length the
// index's documents were embedded with, which need not be the server's /v1/embeddings settings.
import { existsSync } from "node:fs";
import type { ModelDir } from "../io/files.ts";
import { modelIdentity } from "../search/model-identity.ts";
import { searchR3Options } from "../search/settings.ts";
import { SearchIndex } from "../search/store.ts";
import { SearchR3 } from "../search/searchr3.ts";
import type { Engine } from "../text/engine.ts";
import { JobAbortedError } from "./queue.ts";
import type { SearchBackend } from "./server.ts";

export interface Database {
  /** The longest sequence a query embedding may take: the model's KV cache must hold that many tokens. */
  maxLength: number;
  /** Refuses a model other than the index's, whose vectors would not be comparable with the documents'. */
  backend(engine: Engine, modelDir: ModelDir): Promise<SearchBackend>;
}

/** Opened before the model loads, so that a wrong --db fails fast and the KV cache can be sized for it. */
export async function openDatabase(uri: string): Promise<Database> {
  // LanceDB would create a missing local folder; a mistyped path should fail instead.
  const settings = uri.includes("://") || existsSync(uri) ? await SearchIndex.readSettings(uri) : undefined;
  if (!settings) throw new Error(`--db ${uri}: no index there (build one with \`r3gpu index\`)`);
  const index = await SearchIndex.open(uri);
  return {
    maxLength: settings.maxLength,
    async backend(engine, modelDir) {
      index.checkModel(await modelIdentity(modelDir));
      // Searches run together (batched), so truncation is read per query from prepare and generate, not from warnings.
      const r3 = new SearchR3(engine, { ...searchR3Options(index.settings), onWarning: () => {} });
      return {
        maxLength: settings.maxLength,
        // As searchQuery (the CLI's `search`), with the steps apart so that a cancelled reasoning stops here.
        async search(query, { k, reasoning, maxNewTokens, signal }) {
          if (!reasoning) {
            const prepared = r3.prepare(query, "query");
            const [vector] = await r3.encodeIds([prepared.ids]);
            return { results: await index.search(vector, k), truncated: prepared.truncation !== undefined, promptTokens: prepared.ids.length };
          }
          const [thought] = await r3.generate([query], { maxNewTokens, signal });
          if (signal.aborted) throw new JobAbortedError();
          const [vector] = await r3.encode([thought.text], { kind: "query" });
          return {
            results: await index.search(vector, k),
            reasoning: {
              text: thought.reasoning,
              emittedEmbedToken: thought.emittedEmbedToken,
              stopReason: thought.stopReason,
              tokens: thought.generation.ids.length,
            },
            truncated: thought.truncations.length > 0,
            promptTokens: thought.generation.prefillTokens,
          };
        },
      };
    },
  };
}
