// HTTP plumbing for the server: OpenAI-style errors, JSON bodies read under a size limit, JSON and
// server-sent-event responses.
import type { IncomingMessage, ServerResponse } from "node:http";

/** An error answered as `{"error": {"message", "type", "param", "code"}}` with its HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  toJSON() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 about one request field. */
export function badRequest(message: string, param: string | null, code = "invalid_value"): ApiError {
  return new ApiError(400, message, "invalid_request_error", param, code);
}

export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const tooLarge = () => new ApiError(413, `The request body is over the ${maxBytes}-byte limit.`,
    "invalid_request_error", null, "request_too_large", { connection: "close" });
  const declared = Number(req.headers["content-length"]);
  // Refused before reading, so that a client announcing a huge body never gets to send it.
  if (declared > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge();
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") throw badRequest("The request has no body; send a JSON object.", null, "missing_body");
  try {
    return JSON.parse(text);
  } catch {
    throw badRequest("We could not parse the JSON body of your request: it is not valid JSON.", null, "invalid_json");
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(data),
  });
  res.end(data);
}

export function sendError(res: ServerResponse, err: ApiError): void {
  sendJson(res, err.status, err, err.headers);
}

/** A server-sent-event stream: one `data:` line per JSON event, ended by `data: [DONE]`. */
export class EventStream {
  constructor(private readonly res: ServerResponse) {
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      // Reverse proxies (nginx) would otherwise buffer the stream and deliver it in one piece.
      "x-accel-buffering": "no",
    });
    res.flushHeaders();
  }

  send(event: unknown): void {
    this.res.write(`data: ${JSON.stringify(event)}\n\n`);
  }

  done(): void {
    this.res.end("data: [DONE]\n\n");
  }

  /** The OpenAI client turns an event with an `error` field into an APIError; no [DONE] follows it. */
  fail(err: ApiError): void {
    this.res.end(`data: ${JSON.stringify(err)}\n\n`);
  }
}
