// Mutations of HTTP requests to the OpenAI-style server: bodies with wrong types, extreme values and unknown fields,
// broken JSON, wrong methods and paths, and odd headers. `invalid` marks requests the server must refuse.
import type { Rng } from "../rng.ts";
import { hostileValue, nested, paths, setAt, showPath, stringify, type Json } from "./json.ts";

export interface HttpRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
  /** Leave out Content-Length (the body is then ended by closing the connection's write side). */
  noLength?: boolean;
}

export interface HttpMutant {
  label: string;
  request: HttpRequest;
  invalid: boolean;
}

const json = { "content-type": "application/json" };

function seeds(model: string): { path: string; body: Record<string, Json> }[] {
  return [
    { path: "/v1/chat/completions", body: { model, messages: [{ role: "user", content: "Hi" }], max_tokens: 4 } },
    { path: "/v1/chat/completions", body: { model, messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }], max_tokens: 3, stream: true, temperature: 0.7, seed: 1 } },
    { path: "/v1/embeddings", body: { model, input: ["hello", "world"] } },
  ];
}

export function seedRequest(model: string): HttpRequest {
  const s = seeds(model)[0];
  return { method: "POST", path: s.path, headers: json, body: stringify(s.body) };
}

export function mutateRequest(rng: Rng, model: string): HttpMutant {
  const seed = rng.pick(seeds(model));
  const body = seed.body;
  const post = (label: string, b: Json | string, invalid: boolean, headers: Record<string, string> = json): HttpMutant =>
    ({ label: `${seed.path}: ${label}`, request: { method: "POST", path: seed.path, headers, body: typeof b === "string" ? b : stringify(b) }, invalid });
  const ops: (() => HttpMutant)[] = [
    () => {
      const path = rng.pick(paths(body));
      const { label, value } = hostileValue(rng);
      setAt(body, path, value);
      return post(`${showPath(path)} -> ${label}`, body, false);
    },
    () => {
      const path = rng.pick(paths(body));
      setAt(body, path, undefined);
      return post(`${showPath(path)} removed`, body, false);
    },
    () => {
      const { label, value } = hostileValue(rng);
      body[`unknown_${rng.int(10)}`] = value;
      return post(`an unknown field -> ${label}`, body, false);
    },
    () => {
      const size = rng.pick([100_000, 1_100_000, 3_000_000]);
      const word = rng.chance(0.5);
      const text = word ? "a".repeat(size) : "lorem ipsum dolor ".repeat(Math.ceil(size / 18)).slice(0, size);
      if (seed.path === "/v1/embeddings") body.input = text;
      else body.messages = [{ role: "user", content: text }];
      // Past the model's context either way: refused with a 400.
      return post(`a text of ${size} characters${word ? " without a space" : ""}`, body, true);
    },
    () => {
      if (seed.path === "/v1/embeddings") body.input = new Array(rng.pick([300, 10_000])).fill("x");
      else body.messages = new Array(rng.pick([1000, 20_000])).fill({ role: "user", content: "hi" });
      return post("thousands of messages or inputs", body, true);
    },
    () => {
      const deep = nested(50_000, true, "content");
      if (seed.path === "/v1/embeddings") body.input = [deep];
      else body.messages = [{ role: "user", content: "hi", tool_calls: [{ function: { name: "f", arguments: deep } }] }];
      return post("an object nested 50000 deep", body, seed.path === "/v1/embeddings");
    },
    () => post("invalid JSON", stringify(body).slice(0, -3), true),
    () => post("a JSON array", "[1,2,3]", true),
    () => post("an empty body", "", true),
    () => ({ label: `${seed.path}: invalid UTF-8`, invalid: true, request: { method: "POST", path: seed.path, headers: json,
      body: Buffer.concat([Buffer.from('{"messages":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]) } }),
    () => post("a text/plain content type", body, false, { "content-type": "text/plain" }),
    () => post("a Content-Length larger than the limit", body, true, { ...json, "content-length": String(2 ** 40) }),
    () => ({ label: `${seed.path}: no Content-Length`, request: { method: "POST", path: seed.path, headers: json, body: stringify(body), noLength: true }, invalid: false }),
    () => {
      const method = rng.pick(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"]);
      return { label: `${method} ${seed.path}`, request: { method, path: seed.path, headers: json, body: stringify(body) }, invalid: true };
    },
    () => {
      const path = rng.pick(["/", "/v1", "/v1/models/nope", "/v1/chat/completions/extra", "/%ff%fe", "/../../etc/passwd", `/${"a".repeat(20_000)}`, "/v1/models?x=1"]);
      return { label: `GET ${path.slice(0, 40)}`, request: { method: "GET", path, headers: {} }, invalid: path !== "/v1/models?x=1" };
    },
    () => {
      const [name, value] = rng.pick([["authorization", "Bearer x"], ["x-big", "y".repeat(100_000)], ["content-type", "application/json; charset=latin1"], ["transfer-encoding", "gzip"], ["expect", "100-continue"]]);
      return post(`header ${name}: ${value.slice(0, 20)}`, body, name === "x-big" || name === "transfer-encoding", { ...json, [name]: value });
    },
  ];
  return rng.pick(ops)();
}
