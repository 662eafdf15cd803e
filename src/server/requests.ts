// Checks of request bodies, in the OpenAI API's terms: each problem is a 400 naming the offending parameter.
// Fields this server has no use for (user, logit_bias, ...) are ignored, as OpenAI-compatible servers do.
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

export interface EmbeddingsRequest {
  input: string[];
  encodingFormat: "float" | "base64";
}

export function parseEmbeddingsRequest(
  raw: unknown, ctx: { modelId: string; dimensions: number; maxInputs: number },
): EmbeddingsRequest {
  const body = requestObject(raw);
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
  return { input: texts, encodingFormat: format };
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

export function parseChatRequest(raw: unknown, ctx: { modelId: string }): ChatRequest {
  const body = requestObject(raw);
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
}

export function parseSearchRequest(raw: unknown, ctx: { maxK: number }): SearchRequest {
  const body = requestObject(raw);
  const query = body.query;
  if (typeof query !== "string") {
    throw badRequest("'query' must be a string.", "query", query === undefined ? "missing_required_parameter" : "invalid_type");
  }
  if (query.trim() === "") throw badRequest("'query' is empty.", "query", "empty_input");
  return {
    query,
    k: optionalNumber(body, "k", { integer: true, min: 1, max: ctx.maxK }) ?? 10,
    // As `r3gpu search` and searchQuery: Search-R3 embeds a query best after reasoning about it.
    reasoning: optionalBoolean(body, "reasoning") ?? true,
  };
}
