// The r3gpu page: pick a model folder (or give a URL), watch it upload, chat, run Search-R3 searches and the
// golden check. Everything runs in this page on the browser's WebGPU device; the model never leaves the machine.
import { firstDivergence, runGoldenCheck, type GoldenReport } from "../src/check/golden.ts";
import { coveringChoices } from "../src/check/kernel-check.ts";
import { describeAdapter } from "../src/gpu/device.ts";
import { webGpu, type WebGpu } from "../src/gpu/web.ts";
import { pickedFolderModelDir, urlModelDir } from "../src/io/browser.ts";
import type { ModelDir } from "../src/io/files.ts";
import type { UploadProgress } from "../src/model/weights.ts";
import { choicePrecision, parseKernelList } from "../src/ops/kernel-variants.ts";
import { indexedDbTuneCache } from "../src/tune/cache-indexeddb.ts";
import { SearchR3 } from "../src/search/searchr3.ts";
import { cosineMatrix } from "../src/search/similarity.ts";
import type { ChatMessage } from "../src/text/chat.ts";
import { Engine } from "../src/text/engine.ts";
import type { GenerateResult } from "../src/text/generate.ts";
import type { AdapterSummary, LoadRequest, ModelSummary, RankedDocument, SearchOutcome, SearchRequest } from "./hook.ts";

/** The model in the page, with what the panels need of it. */
interface Loaded {
  dir: ModelDir;
  engine: Engine;
  search?: SearchR3;
  summary: ModelSummary;
  /** Document embeddings by text, so that a new query over the same documents embeds only the query. */
  documentEmbeddings: Map<string, Float32Array>;
  /** Truncation warnings from SearchR3, shown when the search that caused them ends. */
  searchWarnings: string[];
  chat: ChatMessage[];
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  gpuInfo: $("gpu-info"),
  folderInput: $<HTMLInputElement>("folder-input"),
  urlForm: $<HTMLFormElement>("url-form"),
  urlInput: $<HTMLInputElement>("url-input"),
  urlLoad: $<HTMLButtonElement>("url-load"),
  loadProgress: $<HTMLProgressElement>("load-progress"),
  loadStatus: $("load-status"),
  goldenRun: $<HTMLButtonElement>("golden-run"),
  goldenStatus: $("golden-status"),
  goldenOut: $("golden-out"),
  chatLog: $("chat-log"),
  chatForm: $<HTMLFormElement>("chat-form"),
  chatInput: $<HTMLTextAreaElement>("chat-input"),
  chatSend: $<HTMLButtonElement>("chat-send"),
  chatStop: $<HTMLButtonElement>("chat-stop"),
  chatClear: $<HTMLButtonElement>("chat-clear"),
  chatMax: $<HTMLInputElement>("chat-max"),
  chatStatus: $("chat-status"),
  searchForm: $<HTMLFormElement>("search-form"),
  searchQuery: $<HTMLInputElement>("search-query"),
  searchReasoning: $<HTMLInputElement>("search-reasoning"),
  searchMax: $<HTMLInputElement>("search-max"),
  searchDocuments: $<HTMLTextAreaElement>("search-documents"),
  searchRun: $<HTMLButtonElement>("search-run"),
  searchStatus: $("search-status"),
  reasoningOut: $("search-reasoning-out"),
  results: $<HTMLOListElement>("search-results"),
};

type State = "idle" | "running" | "done" | "error";

/** Sets a status line; data-state lets tests (and CSS) tell running, done and failed apart. */
function setStatus(el: HTMLElement, state: State, text: string): void {
  el.dataset.state = state;
  el.textContent = text;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

// ---- GPU ----

let gpu: Promise<WebGpu> = webGpu();
let gpuHoldsModel = false;

/** The device for a new model; the previous model's device is destroyed, which frees all its buffers at once. */
async function deviceForLoad(): Promise<WebGpu> {
  if (gpuHoldsModel) {
    (await gpu).device.destroy();
    gpu = webGpu();
  }
  gpuHoldsModel = true;
  return gpu;
}

async function adapterSummary(): Promise<AdapterSummary> {
  const { adapter, device } = await gpu;
  return { ...describeAdapter(adapter, device), isFallbackAdapter: adapter.info.isFallbackAdapter ?? false };
}

adapterSummary().then(
  (a) => {
    const name = [a.vendor, a.architecture, a.description].filter(Boolean).join(" · ") || "unnamed adapter";
    setStatus(ui.gpuInfo, "done", `WebGPU: ${name}${a.isFallbackAdapter ? " (software fallback adapter, slow)" : ""}; ` +
      `largest buffer binding ${mib(a.maxStorageBufferBindingSize)}`);
  },
  (e) => setStatus(ui.gpuInfo, "error", `${message(e)}. This page needs a browser with WebGPU (e.g. a recent Chrome or Edge).`),
);

// ---- One task at a time: the model holds one sequence, so loading, chat, search and the golden check take turns ----

let loaded: Loaded | undefined;
let task: string | undefined;

function updateControls(): void {
  const idle = task === undefined;
  ui.urlLoad.disabled = !idle;
  ui.folderInput.disabled = !idle;
  ui.goldenRun.disabled = !idle || !loaded?.summary.golden;
  ui.chatSend.disabled = !idle || !loaded || !!loaded.summary.chatUnavailable;
  ui.chatStop.disabled = task !== "chat";
  ui.chatClear.disabled = !idle;
  ui.searchRun.disabled = !idle || !loaded?.search;
  document.body.dataset.task = task ?? "";
}

async function exclusive<T>(name: string, run: () => Promise<T>): Promise<T> {
  if (task !== undefined) throw new Error(`busy (${task}); try again when it has finished`);
  task = name;
  updateControls();
  try {
    return await run();
  } finally {
    task = undefined;
    updateControls();
  }
}

function requireModel(): Loaded {
  if (!loaded) throw new Error("no model is loaded");
  return loaded;
}

// ---- Loading ----

function showProgress(p: UploadProgress): void {
  ui.loadProgress.max = p.totalBytes;
  ui.loadProgress.value = p.bytes;
  setStatus(ui.loadStatus, "running", `Uploading weights: ${mib(p.bytes)} of ${mib(p.totalBytes)} (${p.tensor})`);
}

/**
 * The page's URL may force kernel variants (?kernels=linear.decode=splitk,attention.decode=splitkv) and turn tuning
 * off (?tune=0); a load request from the hook says the same.
 */
function loadRequestFromUrl(): LoadRequest {
  const params = new URLSearchParams(location.search);
  return { kernels: params.get("kernels") ?? undefined, tune: params.get("tune") !== "0" };
}

function loadModel(dir: ModelDir, request: LoadRequest = loadRequestFromUrl()): Promise<ModelSummary> {
  return exclusive("load", async () => {
    loaded = undefined;
    clearOutputs();
    ui.loadProgress.removeAttribute("value");
    setStatus(ui.loadStatus, "running", `Reading ${dir.name}…`);
    const t0 = performance.now();
    try {
      const { device } = await deviceForLoad();
      const kernels = parseKernelList(request.kernels ?? "", "kernels");
      const onTune = (done: number, total: number, what: string) =>
        setStatus(ui.loadStatus, "running", `Measuring kernel variants: ${done} of ${total} (${what})`);
      const engine = await Engine.load(device, dir, {
        onProgress: showProgress, kernels, tune: request.tune === false ? false : { cache: indexedDbTuneCache(), onProgress: onTune },
      });
      const searchWarnings: string[] = [];
      let search: SearchR3 | undefined;
      let searchUnavailable: string | null = null;
      try {
        search = new SearchR3(engine, {
          maxLength: Math.min(1024, engine.model.maxSeqLen),
          onWarning: (m) => searchWarnings.push(m),
        });
      } catch (e) {
        searchUnavailable = message(e);
      }
      const { config } = engine.model;
      const golden = await dir.exists("golden.json");
      const summary: ModelSummary = {
        name: dir.name,
        layers: config.numLayers,
        hiddenSize: config.hiddenSize,
        vocabSize: config.vocabSize,
        weightBytes: engine.model.weightBytes,
        loadSeconds: (performance.now() - t0) / 1000,
        golden,
        chatUnavailable: engine.chatTemplate ? null : "the tokenizer has no chat template",
        searchUnavailable,
        kernels: engine.model.kernelChoice,
        kernelsFrom: engine.model.tuneReport?.source ?? "defaults",
      };
      loaded = { dir, engine, search, summary, documentEmbeddings: new Map(), searchWarnings, chat: [] };
      ui.loadProgress.max = 1;
      ui.loadProgress.value = 1;
      setStatus(ui.loadStatus, "done", `Loaded ${dir.name}: ${config.numLayers} layers, hidden ${config.hiddenSize}, ` +
        `${config.numHeads} heads (${config.numKvHeads} KV), vocab ${config.vocabSize}; ` +
        `${mib(summary.weightBytes)} of weights in ${summary.loadSeconds.toFixed(1)} s; kernels ` +
        `${Object.entries(summary.kernels).map(([slot, v]) => `${slot}=${v}`).join(", ")} (${summary.kernelsFrom}).`);
      setStatus(ui.goldenStatus, "idle", summary.golden ? "golden.json found." : "Needs a folder with golden.json.");
      setStatus(ui.chatStatus, summary.chatUnavailable ? "error" : "idle", summary.chatUnavailable ? `Chat unavailable: ${summary.chatUnavailable}.` : "");
      setStatus(ui.searchStatus, searchUnavailable ? "error" : "idle", searchUnavailable ? `Search unavailable: ${searchUnavailable}` :
        `Search-R3: the embedding is read at ${search!.embedToken} (id ${search!.embedTokenId}).`);
      return summary;
    } catch (e) {
      ui.loadProgress.value = 0;
      setStatus(ui.loadStatus, "error", `Could not load ${dir.name}: ${message(e)}`);
      throw e;
    }
  });
}

function clearOutputs(): void {
  ui.goldenOut.replaceChildren();
  ui.chatLog.replaceChildren();
  ui.reasoningOut.textContent = "";
  ui.results.replaceChildren();
  for (const el of [ui.goldenStatus, ui.chatStatus, ui.searchStatus]) setStatus(el, "idle", "");
}

function loadFromUrl(url: string, request?: LoadRequest): Promise<ModelSummary> {
  return loadModel(urlModelDir(new URL(url, location.href)), request);
}

async function variantChoices() {
  return coveringChoices((await deviceForLoad()).device);
}

// ---- Golden check ----

const exp = (x: number) => (Number.isFinite(x) ? x.toExponential(2) : String(x));

function cell(row: HTMLTableRowElement, text: string, className?: string): void {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
}

function renderGolden(report: GoldenReport): void {
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const h of ["seq", "tensor", "max abs error", "max |ref|", "relative", ""]) {
    const th = head.appendChild(document.createElement("th"));
    th.textContent = h;
    if (h.startsWith("max") || h === "relative") th.className = "num";
  }
  const body = table.createTBody();
  for (const r of report.rows) {
    const row = body.insertRow();
    row.className = r.ok ? "ok" : "bad";
    cell(row, String(r.sequence));
    cell(row, r.tensor);
    cell(row, exp(r.maxAbsError), "num");
    cell(row, r.maxAbsRef.toFixed(4), "num");
    cell(row, exp(r.relError), "num");
    cell(row, r.ok ? "✓" : "✗");
  }
  for (const s of report.sequences) {
    const row = body.insertRow();
    row.className = s.top5.ok && s.greedy.ok ? "ok" : "bad";
    cell(row, String(s.sequence));
    cell(row, `top-5 ids ${s.top5.ok ? "match" : "differ"}; greedy: ${s.greedy.compared} of ${s.greedy.want.length} compared, ${s.greedy.note}`);
    row.cells[1].colSpan = 4;
    cell(row, s.top5.ok && s.greedy.ok ? "✓" : "✗");
  }
  ui.goldenOut.replaceChildren(table);
}

function runGolden(opts: { maxLength?: number } = {}): Promise<GoldenReport> {
  return exclusive("golden", async () => {
    const { engine, dir, summary } = requireModel();
    if (!summary.golden) throw new Error(`${dir.name} has no golden.json`);
    ui.goldenOut.replaceChildren();
    delete ui.goldenStatus.dataset.ok;
    setStatus(ui.goldenStatus, "running", "Starting…");
    const t0 = performance.now();
    // A variant that computes in f16 holds the model to f16's tolerance; the verdict says so.
    const { tolerance, f16 } = choicePrecision(engine.model.kernelChoice);
    try {
      const report = await runGoldenCheck(engine.model, dir, {
        tolerance,
        maxLength: opts.maxLength,
        onSequence: (i, n) => setStatus(ui.goldenStatus, "running", `Running sequence ${i} (${n} tokens)…`),
      });
      renderGolden(report);
      ui.goldenStatus.dataset.ok = String(report.ok);
      setStatus(ui.goldenStatus, "done", report.ok
        ? `PASS: ${report.rows.length} tensors within ${tolerance} × max|ref|${f16.length ? ` (f16: ${f16.join(", ")})` : ""}, ` +
          `top-5 and greedy tokens match (${seconds(performance.now() - t0)}).`
        : `FAIL: ${firstDivergence(report)}`);
      return report;
    } catch (e) {
      setStatus(ui.goldenStatus, "error", `Golden check failed to run: ${message(e)}`);
      throw e;
    }
  });
}

// ---- Chat ----

let stopChat = false;

function bubble(role: string, text: string): HTMLElement {
  const el = document.createElement("div");
  el.className = `message ${role}`;
  el.textContent = text;
  ui.chatLog.appendChild(el);
  el.scrollIntoView({ block: "end" });
  return el;
}

function chat(text: string): Promise<GenerateResult | undefined> {
  return exclusive("chat", async () => {
    const model = requireModel();
    const maxNewTokens = ui.chatMax.valueAsNumber || 256;
    model.chat.push({ role: "user", content: text });
    bubble("user", text);
    const out = bubble("assistant", "");
    out.classList.add("streaming");
    setStatus(ui.chatStatus, "running", "Generating…");
    stopChat = false;
    let reply = "";
    try {
      const stream = model.engine.generateStream(model.chat, { maxNewTokens });
      for (;;) {
        if (stopChat) {
          // Abandoning the stream is enough: the next generation resets the model.
          model.chat.push({ role: "assistant", content: reply });
          setStatus(ui.chatStatus, "done", "Stopped.");
          return undefined;
        }
        const r = await stream.next();
        if (r.done) {
          model.chat.push({ role: "assistant", content: r.value.text });
          const g = r.value;
          setStatus(ui.chatStatus, "done", `${g.ids.length} tokens (stop: ${g.stopReason}); prompt ${g.prefillTokens} tokens at ` +
            `${g.prefillTokPerS.toFixed(0)} tok/s, generation ${g.decodeTokPerS.toFixed(1)} tok/s.`);
          return g;
        }
        reply += r.value;
        out.textContent = reply;
        out.scrollIntoView({ block: "end" });
      }
    } catch (e) {
      // The user turn that failed stays out of the history, so the next message starts clean.
      model.chat.pop();
      setStatus(ui.chatStatus, "error", message(e));
      throw e;
    } finally {
      out.classList.remove("streaming");
    }
  });
}

// ---- Search ----

function span(className: string, text = ""): HTMLSpanElement {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

function renderResults(ranked: RankedDocument[]): void {
  ui.results.replaceChildren(...ranked.map(({ index, document: text, score }) => {
    const li = document.createElement("li");
    // Full precision for anyone reading the list programmatically; the text shows four decimals.
    li.dataset.index = String(index);
    li.dataset.score = String(score);
    const bar = span("bar");
    // Cosines lie in [-1, 1]; the bar shows where in that range the score is.
    bar.style.setProperty("--fill", `${((score + 1) / 2) * 100}%`);
    li.append(bar, span("score", score.toFixed(4)), span("doc", text));
    return li;
  }));
}

function search(request: SearchRequest): Promise<SearchOutcome> {
  return exclusive("search", async () => {
    const model = requireModel();
    const r3 = model.search;
    if (!r3) throw new Error(`search is unavailable: ${model.summary.searchUnavailable}`);
    const query = request.query.trim();
    const documents = request.documents;
    ui.reasoningOut.textContent = "";
    ui.results.replaceChildren();
    model.searchWarnings.length = 0;
    setStatus(ui.searchStatus, "running", "Searching…");
    try {
      if (!query) throw new Error("type a query");
      if (documents.length === 0) throw new Error("add at least one document (one per line)");
      const t0 = performance.now();
      const missing = [...new Set(documents.filter((d) => !model.documentEmbeddings.has(d)))];
      const embedded = await r3.encode(missing, {
        kind: "document",
        onProgress: (done, total) => setStatus(ui.searchStatus, "running", `Embedding documents: ${done} of ${total}…`),
      });
      missing.forEach((d, i) => model.documentEmbeddings.set(d, embedded[i]));

      let queryText = query;
      let reasoning: string | undefined;
      if (request.reasoning) {
        setStatus(ui.searchStatus, "running", "Reasoning about the query…");
        const [r] = await r3.generate([query], {
          maxNewTokens: request.maxReasoningTokens,
          onText: (chunk) => { ui.reasoningOut.textContent += chunk; },
        });
        queryText = r.text;
        reasoning = r.reasoning;
        if (!r.emittedEmbedToken) ui.reasoningOut.textContent += `\n[stopped (${r.stopReason}) before ${r3.embedToken}; the embedding is read after an appended suffix]`;
      } else {
        ui.reasoningOut.textContent = "(none: the query is embedded directly)";
      }
      setStatus(ui.searchStatus, "running", "Embedding the query…");
      const [q] = await r3.encode([queryText], { kind: "query" });
      const scores = cosineMatrix([q], documents.map((d) => model.documentEmbeddings.get(d)!))[0];
      const ranked = scores.map((score, index) => ({ index, document: documents[index], score }))
        .sort((a, b) => b.score - a.score || a.index - b.index);
      renderResults(ranked);
      setStatus(ui.searchStatus, "done", `Ranked ${documents.length} documents in ${seconds(performance.now() - t0)}` +
        ` (${missing.length} newly embedded).${model.searchWarnings.map((w) => ` ${w}`).join("")}`);
      return { scores, ranked, reasoning };
    } catch (e) {
      setStatus(ui.searchStatus, "error", message(e));
      throw e;
    }
  });
}

// ---- Controls ----

/** Runs a control's action; its failure is already shown in the panel's status line. */
function fromControl(action: () => Promise<unknown>): void {
  action().catch((e) => console.error(e));
}

ui.folderInput.addEventListener("change", () => {
  const files = ui.folderInput.files;
  if (!files || files.length === 0) return;
  fromControl(async () => {
    try {
      await loadModel(pickedFolderModelDir(files));
    } finally {
      // Picking the same folder again must fire "change" again.
      ui.folderInput.value = "";
    }
  });
});

ui.urlForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const url = ui.urlInput.value.trim();
  if (url) fromControl(() => loadFromUrl(url));
});

ui.goldenRun.addEventListener("click", () => fromControl(() => runGolden()));

ui.chatForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.chatInput.value.trim();
  if (!text || ui.chatSend.disabled) return;
  ui.chatInput.value = "";
  fromControl(() => chat(text));
});
ui.chatInput.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    ui.chatForm.requestSubmit();
  }
});
ui.chatStop.addEventListener("click", () => { stopChat = true; });
ui.chatClear.addEventListener("click", () => {
  if (loaded) loaded.chat = [];
  ui.chatLog.replaceChildren();
  setStatus(ui.chatStatus, "idle", "");
});

ui.searchForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const documents = ui.searchDocuments.value.split(/\r?\n/).map((d) => d.trim()).filter(Boolean);
  fromControl(() => search({
    query: ui.searchQuery.value,
    documents,
    reasoning: ui.searchReasoning.checked,
    maxReasoningTokens: ui.searchMax.valueAsNumber || undefined,
  }));
});

updateControls();
window.r3gpu = { gpu: adapterSummary, loadFromUrl, variantChoices, runGolden, search };

// The service worker (public/sw.js) lets the built page open again with no network; the dev server needs none.
if (import.meta.env.PROD && "serviceWorker" in navigator) {
  navigator.serviceWorker.register("./sw.js").catch((e) => console.warn(`r3gpu: no offline copy of the page: ${message(e)}`));
}
