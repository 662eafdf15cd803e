// The HTTP server: `r3gpu serve` on the embedded model, in a bounded child process, sent one mutated request per
// case on a fresh connection. A 5xx, a dropped connection, a hang or the server's death is a defect; a 4xx is clean
// when its message names what was wrong (the server's messages quote the parameter), or when the HTTP parser refused
// the request outright.
import { connect } from "node:net";
import { mutateRequest, seedRequest, type HttpRequest } from "../mutators/http.ts";
import type { Rng } from "../rng.ts";
import type { Outcome } from "./types.ts";

export interface HttpCase {
  mutation: string;
  request: HttpRequest;
  invalid: boolean;
}

export interface HttpTarget {
  readonly name: string;
  readonly kind: "http";
  /** The served model's folder (relative to the repository) and the id the server answers to. */
  readonly model: string;
  readonly modelId: string;
  generate(rng: Rng, index: number): HttpCase;
}

export const httpTarget: HttpTarget = {
  name: "http",
  kind: "http",
  model: "models/tiny-qwen2",
  modelId: "tiny-qwen2",
  generate(rng, index) {
    if (index === 0) return { mutation: "none (the seed)", request: seedRequest(this.modelId), invalid: false };
    const m = mutateRequest(rng, this.modelId);
    return { mutation: m.label, request: m.request, invalid: m.invalid };
  },
};

export interface HttpResponse {
  status?: number;
  body: string;
  /** The connection closed before a status line arrived, or failed. */
  dropped?: string;
  timedOut?: boolean;
}

/** Sends a request as raw bytes (so that malformed ones reach the server as they are) and reads the whole answer. */
export function send(port: number, r: HttpRequest, timeoutMs: number): Promise<HttpResponse> {
  return new Promise((done) => {
    const body = r.body === undefined ? Buffer.alloc(0) : typeof r.body === "string" ? Buffer.from(r.body, "utf8") : Buffer.from(r.body);
    const headers: Record<string, string> = { host: `127.0.0.1:${port}`, connection: "close", ...r.headers };
    if (!r.noLength && !("content-length" in headers) && r.body !== undefined) headers["content-length"] = String(body.length);
    const head = `${r.method} ${r.path} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n`;
    const chunks: Buffer[] = [];
    const socket = connect(port, "127.0.0.1");
    const finish = (extra: Partial<HttpResponse> = {}) => {
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString("utf8");
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1];
      const split = text.indexOf("\r\n\r\n");
      done({ status: status ? Number(status) : undefined, body: split >= 0 ? text.slice(split + 4) : "", ...extra });
    };
    const timer = setTimeout(() => finish({ timedOut: true }), timeoutMs);
    socket.on("data", (c) => chunks.push(c));
    socket.on("end", () => finish(chunks.length === 0 ? { dropped: "closed without an answer" } : {}));
    socket.on("error", (e) => finish(chunks.length === 0 ? { dropped: e.message } : {}));
    socket.write(Buffer.concat([Buffer.from(head, "latin1"), body]), () => {
      if (r.noLength) socket.end();
    });
  });
}

/** The outcome of one answer, and what to report of it. */
export function classifyResponse(res: HttpResponse, invalid: boolean): { outcome: Outcome; detail?: string } {
  if (res.timedOut) return { outcome: "hang", detail: `no complete answer (status ${res.status ?? "none"})` };
  if (res.dropped || res.status === undefined) return { outcome: "crash", detail: `connection dropped: ${res.dropped ?? "no status line"}` };
  const { message, param } = errorOf(res.body);
  if (res.status >= 500) return { outcome: "crash", detail: `${res.status}: ${message ?? res.body.slice(0, 300)}` };
  if (res.status >= 400) {
    // Node's HTTP parser answers a request it cannot read (headers too large, bad framing) with no body.
    if (res.body.trim() === "") return { outcome: "clean-error", detail: `${res.status} from the HTTP parser` };
    const named = message !== undefined && (param !== undefined || /'[^']+'|body|JSON|URL|does not take|text/i.test(message));
    return { outcome: named ? "clean-error" : "unnamed-error", detail: `${res.status}: ${message ?? res.body.slice(0, 300)}` };
  }
  return { outcome: invalid ? "accepted-invalid" : "accepted", detail: invalid ? `${res.status}` : undefined };
}

/** The OpenAI-style error of a body: its message, and the parameter it names. */
function errorOf(body: string): { message?: string; param?: string } {
  try {
    const { message, param } = JSON.parse(body)?.error ?? {};
    return { message: typeof message === "string" ? message : undefined, param: typeof param === "string" ? param : undefined };
  } catch {
    return {};
  }
}
