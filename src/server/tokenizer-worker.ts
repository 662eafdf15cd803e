// The tokenizer thread's side (see tokenizer-thread.ts): loads the model folder's tokenizer and answers one request
// at a time. Tokenizing a long word takes seconds in the pure-JS tokenizer; here it holds up no HTTP client.
import { parentPort, workerData } from "node:worker_threads";
import { nodeModelDir } from "../io/node.ts";
import { SearchR3, type TextKind } from "../search/searchr3.ts";
import { ChatTemplate } from "../text/chat.ts";
import type { Engine } from "../text/engine.ts";
import { TextTokenizer } from "../text/tokenizer.ts";
import type { ThreadReply, ThreadRequest, WorkerData } from "./tokenizer-thread.ts";

const port = parentPort!;
const { modelDir, vocabSize, maxSeqLen } = workerData as WorkerData;

try {
  const tokenizer = await TextTokenizer.load(nodeModelDir(modelDir));
  const chatTemplate = tokenizer.chatTemplate === undefined ? undefined : ChatTemplate.fromTokenizer(tokenizer);
  // SearchR3's text preparation reads only the tokenizer, the chat template and the model's vocabSize and maxSeqLen;
  // this thread has no GPU, so it gets those alone.
  const textOnly = { model: { config: { vocabSize }, maxSeqLen }, tokenizer, chatTemplate } as unknown as Engine;
  const embedders = new Map<number, SearchR3>();
  const embedder = (maxLength: number) => {
    let r3 = embedders.get(maxLength);
    if (!r3) embedders.set(maxLength, r3 = new SearchR3(textOnly, { maxLength, onWarning: () => {} }));
    return r3;
  };

  // Byte-level BPE: every token stands for a run of the (normalized) text's UTF-8 bytes, and an added token for its
  // own text, so no token covers more bytes than the longest decoded token has.
  let maxTokenBytes = 0;
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    if (tokenizer.hasToken(id)) maxTokenBytes = Math.max(maxTokenBytes, Buffer.byteLength(tokenizer.decode([id])));
  }

  const answer = (req: ThreadRequest): unknown => {
    switch (req.op) {
      case "encode":
        return tokenizer.encode(req.text);
      case "prepare":
        return req.texts.map((text, i) => {
          const p = embedder(req.maxLength).prepare(text, req.kind as TextKind, i);
          return { ids: p.ids, truncation: p.truncation };
        });
      case "head": {
        const ids = tokenizer.encode(req.text);
        if (ids.length <= req.maxTokens) return { text: req.text, tokens: ids.length };
        // As SearchR3 cuts: never inside a multi-byte character, which would decode to U+FFFD.
        const whole = tokenizer.decode(ids);
        let keep = req.maxTokens;
        while (keep > 0 && !whole.startsWith(tokenizer.decode(ids.slice(0, keep)))) keep--;
        return { text: tokenizer.decode(ids.slice(0, keep)), tokens: ids.length };
      }
    }
  };
  port.on("message", (req: ThreadRequest) => {
    let reply: ThreadReply;
    try {
      reply = { result: answer(req) };
    } catch (e) {
      reply = { error: (e as Error)?.message ?? String(e) };
    }
    port.postMessage(reply);
  });
  port.postMessage({ ready: maxTokenBytes } satisfies ThreadReply);
} catch (e) {
  port.postMessage({ failed: (e as Error)?.message ?? String(e) } satisfies ThreadReply);
}
