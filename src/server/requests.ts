// Checks of request bodies, in the OpenAI API's terms: each problem is a 400 naming the offending parameter.
// Parameters this server does not implement (tools, logprobs, ...) are refused by name, not ignored: a client that
// sends them relies on an effect it would not get.
import type { TextKind } from "../search/searchr3.ts";
import type { ChatMessage } from "../text/chat.ts";
import { ApiError, badRequest } from "./http.ts";

type Body = Record<string, unknown>;

export function requestObject(body: unknown): Body {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw badRequest("The request body must be a JSON object.", null, "invalid_type");
  }
  return body as Body;
}

/** `model` may be left out; a model other than the one served is refused as OpenAI refuses an unknown one. */
export function checkModel(body: Body, modelId: string): void {
  const model = body.model;
  if (model === undefined) return;
  if (typeof model !== "string") throw badRequest("'model' must be a string.", "model", "invalid_type");
  if (model !== modelId) {
    throw new ApiError(404, `The model '${model}' does not exist; this server serves '${modelId}'.`,
      "invalid_request_error", "model", "model_not_found");
  }
}

/**
 * Refuses every parameter but `known` (null counts as absent, as in OpenAI's API), except those in `noOps` at the
 * value that asks for nothing, which some clients send by default (LangChain's presence_penalty: 0, ...).
 */
function refuseUnsupported(body: Body, known: readonly string[], noOps: Record<string, (v: unknown) => boolean> = {}): void {
  const refused = Object.keys(body).filter((k) => body[k] !== null && !known.includes(k) && !noOps[k]?.(body[k]));
  if (refused.length === 0) return;
  const names = refused.map((k) => `'${k}'`).join(", ");
  throw badRequest(`${refused.length === 1 ? "Parameter" : "Parameters"} ${names} ${refused.length === 1 ? "is" : "are"} not ` +
    `supported by this server; it takes ${known.join(", ")}.`, refused[0], "unsupported_parameter");
}

const isEmptyObject = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 0;

interface NumberRule {
  integer?: boolean;
  min?: number;
  max?: number;
  /** min itself is not allowed. */
  above?: boolean;
}

function optionalNumber(body: Body, name: string, rule: NumberRule): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw badRequest(`'${name}' must be a number.`, name, "invalid_type");
  if (rule.integer && !Number.isInteger(v)) throw badRequest(`'${name}' must be an integer, got ${v}.`, name, "invalid_type");
  const low = rule.min !== undefined && (rule.above ? v <= rule.min : v < rule.min);
  if (low || (rule.max !== undefined && v > rule.max)) {
    const range = `${rule.above ? "above" : "at least"} ${rule.min}${rule.max !== undefined ? ` and at most ${rule.max}` : ""}`;
    throw badRequest(`'${name}' must be ${range}, got ${v}.`, name);
  }
  return v;
}

function optionalBoolean(body: Body, name: string): boolean | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw badRequest(`'${name}' must be true or false.`, name, "invalid_type");
  return v;
}

/**
 * `input_type` names for Search-R3's two prompts: Voyage's query/document, Cohere's search_query/search_document,
 * and passage, which LangChain's NVIDIA embeddings (and E5-style models) call documents.
 */
export const INPUT_TYPES: Readonly<Record<string, TextKind>> = {
  query: "query", search_query: "query", document: "document", search_document: "document", passage: "document",
};

export interface EmbeddingsRequest {
  input: string[];
  encodingFormat: "float" | "base64";
  /** Which prompt embeds the inputs. */
  kind: TextKind;
  /** Let the model reason about each query before embedding it. */
  reasoning: boolean;
  /** Caps the reasoning; absent: the server's default. */
  maxNewTokens?: number;
}

const EMBEDDINGS_PARAMETERS = ["model", "input", "encoding_format", "dimensions", "user", "input_type", "reasoning", "max_new_tokens"];

export function parseEmbeddingsRequest(
  raw: unknown, ctx: { modelId: string; dimensions: number; maxInputs: number },
): EmbeddingsRequest {
  const body = requestObject(raw);
  refuseUnsupported(body, EMBEDDINGS_PARAMETERS);
  checkModel(body, ctx.modelId);
  const input = body.input;
  let texts: string[];
  if (input === undefined || input === null) {
    throw badRequest("'input' is required: a string or an array of strings.", "input", "missing_required_parameter");
  } else if (typeof input === "string") {
    texts = [input];
  } else if (Array.isArray(input) && input.every((t) => typeof t === "string")) {
    texts = input;
  } else if (Array.isArray(input) && input.every((t) => typeof t === "number" || Array.isArray(t))) {
    throw badRequest("'input' as token ids is not supported; send text (a string or an array of strings).", "input", "invalid_type");
  } else {
    throw badRequest("'input' must be a string or an array of strings.", "input", "invalid_type");
  }
  if (texts.length === 0) throw badRequest("'input' is an empty array; give at least one string.", "input", "empty_input");
  if (texts.length > ctx.maxInputs) {
    throw badRequest(`'input' has ${texts.length} strings; at most ${ctx.maxInputs} are allowed per request.`, "input", "too_many_inputs");
  }
  const empty = texts.findIndex((t) => t === "");
  if (empty >= 0) throw badRequest(`'input[${empty}]' is an empty string.`, "input", "empty_input");

  const format = body.encoding_format ?? "float";
  if (format !== "float" && format !== "base64") {
    throw badRequest(`'encoding_format' must be "float" or "base64", got ${JSON.stringify(format)}.`, "encoding_format");
  }
  const dimensions = optionalNumber(body, "dimensions", { integer: true, min: 1 });
  if (dimensions !== undefined && dimensions !== ctx.dimensions) {
    throw badRequest(`'dimensions' ${dimensions} is not supported: this model's embeddings have ${ctx.dimensions} ` +
      "dimensions and cannot be shortened (it was not trained for it); leave 'dimensions' out.", "dimensions", "unsupported_value");
  }
  // Voyage's null input_type means no prompt at all; the document prompt is the nearest this model has.
  const inputType = body.input_type ?? "document";
  const kind = typeof inputType === "string" && Object.hasOwn(INPUT_TYPES, inputType) ? INPUT_TYPES[inputType] : undefined;
  if (!kind) {
    throw badRequest(`'input_type' must be one of ${Object.keys(INPUT_TYPES).map((t) => `"${t}"`).join(", ")}; ` +
      `got ${JSON.stringify(inputType)}.`, "input_type");
  }
  const reasoning = optionalBoolean(body, "reasoning") ?? false;
  if (reasoning && kind !== "query") {
    throw badRequest("'reasoning' applies to queries: send it with 'input_type': \"query\".", "reasoning", "unsupported_value");
  }
  return { input: texts, encodingFormat: format, kind, reasoning, maxNewTokens: reasoningCap(body, reasoning) };
}

/** max_new_tokens caps reasoning, so it means nothing without it. */
function reasoningCap(body: Body, reasoning: boolean): number | undefined {
  const cap = optionalNumber(body, "max_new_tokens", { integer: true, min: 1 });
  if (cap !== undefined && !reasoning) {
    throw badRequest("'max_new_tokens' caps the reasoning, which this request turns off; leave it out or set " +
      "'reasoning': true.", "max_new_tokens", "unsupported_value");
  }
  return cap;
}

export interface ChatRequest {
  messages: ChatMessage[];
  stream: boolean;
  /** stream_options.include_usage: a last chunk carries the token counts. */
  includeUsage: boolean;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  stop: string[];
  seed?: number;
}

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);
const MAX_STOP_STRINGS = 4;

const CHAT_PARAMETERS = ["model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
  "temperature", "top_p", "stop", "seed", "n", "user"];
const CHAT_NO_OPS: Record<string, (v: unknown) => boolean> = {
  frequency_penalty: (v) => v === 0,
  presence_penalty: (v) => v === 0,
  logprobs: (v) => v === false,
  logit_bias: isEmptyObject,
  tools: (v) => Array.isArray(v) && v.length === 0,
  tool_choice: (v) => v === "none",
  response_format: (v) => JSON.stringify(v) === '{"type":"text"}',
  store: (v) => v === false,
};

export function parseChatRequest(raw: unknown, ctx: { modelId: string }): ChatRequest {
  const body = requestObject(raw);
  refuseUnsupported(body, CHAT_PARAMETERS, CHAT_NO_OPS);
  checkModel(body, ctx.modelId);
  const messages = body.messages;
  if (!Array.isArray(messages)) {
    throw badRequest("'messages' must be an array of {role, content} objects.", "messages",
      messages === undefined ? "missing_required_parameter" : "invalid_type");
  }
  if (messages.length === 0) throw badRequest("'messages' is empty; give at least one message.", "messages", "empty_input");

  const n = optionalNumber(body, "n", { integer: true, min: 1 });
  if (n !== undefined && n !== 1) throw badRequest("'n' must be 1: this server generates one choice per request.", "n", "unsupported_value");
  const stop = body.stop;
  let stops: string[];
  if (stop === undefined || stop === null) stops = [];
  else if (typeof stop === "string") stops = [stop];
  else if (Array.isArray(stop) && stop.every((s) => typeof s === "string")) stops = stop;
  else throw badRequest("'stop' must be a string or an array of strings.", "stop", "invalid_type");
  if (stops.length > MAX_STOP_STRINGS) throw badRequest(`'stop' has ${stops.length} strings; at most ${MAX_STOP_STRINGS} are allowed.`, "stop");
  if (stops.includes("")) throw badRequest("'stop' strings must not be empty.", "stop");

  const options = body.stream_options;
  if (options !== undefined && options !== null && (typeof options !== "object" || Array.isArray(options))) {
    throw badRequest("'stream_options' must be an object.", "stream_options", "invalid_type");
  }
  const includeUsage = options ? optionalBoolean(options as Body, "include_usage") : undefined;
  const maxTokens = optionalNumber(body, "max_completion_tokens", { integer: true, min: 1 })
    ?? optionalNumber(body, "max_tokens", { integer: true, min: 1 });
  return {
    messages: messages.map(parseMessage),
    stream: optionalBoolean(body, "stream") ?? false,
    includeUsage: includeUsage ?? false,
    maxTokens,
    temperature: optionalNumber(body, "temperature", { min: 0, max: 2 }),
    topP: optionalNumber(body, "top_p", { min: 0, max: 1, above: true }),
    stop: stops,
    seed: optionalNumber(body, "seed", { integer: true, min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
  };
}

/** Content is a string or an array of text parts; "developer" is OpenAI's newer name for "system". */
function parseMessage(m: unknown, i: number): ChatMessage {
  const param = `messages[${i}]`;
  if (m === null || typeof m !== "object" || Array.isArray(m)) throw badRequest(`'${param}' must be an object.`, param, "invalid_type");
  const { role, content } = m as Body;
  if (typeof role !== "string" || !ROLES.has(role)) {
    throw badRequest(`'${param}.role' must be one of ${[...ROLES].join(", ")}; got ${JSON.stringify(role)}.`, `${param}.role`);
  }
  let text: string;
  if (typeof content === "string") {
    text = content;
  } else if (content === null && role === "assistant") {
    text = "";
  } else if (Array.isArray(content)) {
    text = content.map((part, j) => {
      const p = part as Body | null;
      if (p?.type !== "text" || typeof p.text !== "string") {
        throw badRequest(`'${param}.content[${j}]': only text parts ({"type": "text", "text": ...}) are supported.`,
          `${param}.content`, "unsupported_value");
      }
      return p.text;
    }).join("");
  } else {
    throw badRequest(`'${param}.content' must be a string or an array of text parts.`, `${param}.content`, "invalid_type");
  }
  return { role: role === "developer" ? "system" : role, content: text };
}

export interface SearchRequest {
  query: string;
  k: number;
  reasoning: boolean;
  /** Caps the reasoning; absent: the server's default. */
  maxNewTokens?: number;
}

export function parseSearchRequest(raw: unknown, ctx: { modelId: string; maxK: number }): SearchRequest {
  const body = requestObject(raw);
  refuseUnsupported(body, ["model", "query", "k", "reasoning", "max_new_tokens"]);
  checkModel(body, ctx.modelId);
  const query = body.query;
  if (typeof query !== "string") {
    throw badRequest("'query' must be a string.", "query", query === undefined ? "missing_required_parameter" : "invalid_type");
  }
  if (query.trim() === "") throw badRequest("'query' is empty.", "query", "empty_input");
  // As `r3gpu search` and searchQuery: Search-R3 embeds a query best after reasoning about it.
  const reasoning = optionalBoolean(body, "reasoning") ?? true;
  return {
    query,
    k: optionalNumber(body, "k", { integer: true, min: 1, max: ctx.maxK }) ?? 10,
    reasoning,
    maxNewTokens: reasoningCap(body, reasoning),
  };
}
