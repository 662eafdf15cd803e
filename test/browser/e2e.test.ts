// End-to-end test of the browser page (dist-web/, built by `npm run build:web`) in headless Chromium with WebGPU:
// it loads the shared tiny-public model from a local server (tuning its kernel variants, then again from the
// IndexedDB cache), runs the golden check (with the kernels chosen, then with every variant the adapter supports)
// and Search-R3 searches in the page and compares them with the golden values, chats, screenshots the page, loads a
// folder whose safetensors file is over 4 GiB through the folder picker and from a URL, and reopens with no server
// (service worker).
import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { OP_SLOTS } from "../../src/ops/variant.ts";
import type { AdapterSummary, SearchOutcome } from "../../web/hook.ts";
import { goldenDir, repoRoot } from "../shared-paths.ts";
import { serveStatic, type StaticServer } from "../static-server.ts";
import { colourStats, decodePng } from "./png.ts";

const CHROMIUM = process.env.R3GPU_CHROMIUM ?? "/usr/bin/chromium";
/**
 * The flags keep Chromium off the network (no QUIC, first-run, background, component-update or sync traffic)
 * and turn WebGPU on; headless, it then runs on its SwiftShader software adapter where there is no GPU.
 */
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--enable-unsafe-webgpu",
];

const distWeb = join(repoRoot, "dist-web");
const tinyDir = join(goldenDir(), "tiny-public");
const golden = JSON.parse(await readFile(join(tinyDir, "search-golden.json"), "utf8"));
const queries: { input: string; greedy: { text: string } }[] = golden.queries;
const documents: string[] = golden.documents.map((d: { input: string }) => d.input);
const cosine: number[][] = golden.cosine;
const COSINE_TOLERANCE = 1e-4;

// SwiftShader runs WebGPU on the CPU: the golden check's 300-token sequence takes a while there.
const SLOW = 300_000;

/** The padding placed before the real tensors of the big model file: their offsets lie past 2^32. */
const PADDING_BYTES = 4.5 * 2 ** 30;

/**
 * A copy of the tiny-public folder whose model.safetensors starts with a 4.5 GiB zero-filled tensor ("padding",
 * which the loader never reads). The file is sparse, so it takes about as much disk as the original.
 */
async function bigModelFolder(dest: string): Promise<void> {
  await mkdir(dest);
  for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "golden.json", "golden.safetensors"]) {
    await copyFile(join(tinyDir, f), join(dest, f));
  }
  const src = await readFile(join(tinyDir, "model.safetensors"));
  const headerLength = Number(src.readBigUInt64LE(0));
  const header: Record<string, { data_offsets: number[] }> = JSON.parse(src.subarray(8, 8 + headerLength).toString("utf8"));
  const shifted: Record<string, unknown> = { padding: { dtype: "F32", shape: [PADDING_BYTES / 4], data_offsets: [0, PADDING_BYTES] } };
  for (const [name, entry] of Object.entries(header)) {
    shifted[name] = name === "__metadata__" ? entry : { ...entry, data_offsets: entry.data_offsets.map((o) => o + PADDING_BYTES) };
  }
  let json = JSON.stringify(shifted);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const file = await open(join(dest, "model.safetensors"), "w");
  try {
    await file.write(Buffer.concat([length, Buffer.from(json)]), 0, undefined, 0);
    await file.write(src.subarray(8 + headerLength), 0, undefined, 8 + Buffer.byteLength(json) + PADDING_BYTES);
  } finally {
    await file.close();
  }
}

/** Waits for a status line to leave "running" and returns what it says; fails with its text on an error. */
async function settled(page: Page, selector: string, timeout = SLOW): Promise<string> {
  await page.waitForSelector(`${selector}:is([data-state="done"], [data-state="error"])`, { timeout });
  const { state, text } = await page.$eval(selector, (el) => ({ state: (el as HTMLElement).dataset.state, text: el.textContent ?? "" }));
  assert.equal(state, "done", `${selector}: ${text}`);
  return text;
}

function assertRanking(scores: number[], want: number[], ranked: { index: number; score: number }[], what: string): void {
  assert.equal(scores.length, want.length, what);
  scores.forEach((s, j) => {
    assert.ok(Math.abs(s - want[j]) <= COSINE_TOLERANCE, `${what}, document ${j}: cosine ${s}, golden ${want[j]}`);
  });
  const order = want.map((_, j) => j).sort((a, b) => want[b] - want[a]);
  assert.deepEqual(ranked.map((r) => r.index), order, `${what}: ranking`);
  ranked.forEach((r) => assert.equal(r.score, scores[r.index], `${what}: ranked score of document ${r.index}`));
}

/** Starts recording the distinct texts an element shows, to tell a stream from text that arrives all at once. */
async function recordTexts(page: Page, selector: string): Promise<() => Promise<string[]>> {
  await page.$eval(selector, (el) => {
    const seen: string[] = [];
    new MutationObserver(() => {
      const text = el.textContent ?? "";
      if (seen.at(-1) !== text) seen.push(text);
    }).observe(el, { childList: true, subtree: true, characterData: true });
    (el as unknown as { seen: string[] }).seen = seen;
  });
  return () => page.$eval(selector, (el) => (el as unknown as { seen: string[] }).seen);
}

/** The ranked list as the page shows it. */
function shownRanking(page: Page): Promise<{ index: number; score: number }[]> {
  return page.$$eval("#search-results li", (items) => items.map((li) => ({
    index: Number((li as HTMLElement).dataset.index),
    score: Number((li as HTMLElement).dataset.score),
  })));
}

describe("browser page in headless Chromium (WebGPU)", { timeout: 1_200_000 }, () => {
  let work: string;
  let server: StaticServer;
  let context: BrowserContext;
  let page: Page;
  let adapter: AdapterSummary;
  const pageErrors: string[] = [];
  const offsite: string[] = [];

  before(async () => {
    await stat(join(distWeb, "index.html")).catch(() => {
      throw new Error(`${distWeb}/index.html is missing: build the page first (npm run build:web)`);
    });
    work = await mkdtemp(join(tmpdir(), "r3gpu-e2e-"));
    await bigModelFolder(join(work, "big-model"));
    server = await serveStatic({ "/": distWeb, "/model/": tinyDir, "/big-model/": join(work, "big-model") });
    context = await chromium.launchPersistentContext(join(work, "profile"), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
    });
    page = context.pages()[0] ?? await context.newPage();
    page.on("pageerror", (e) => pageErrors.push(e.message));
    context.on("request", (r) => {
      if (!r.url().startsWith(`${server.origin}/`) && !r.url().startsWith("data:")) offsite.push(r.url());
    });
    await page.goto(`${server.origin}/`);
    await page.waitForFunction(() => window.r3gpu !== undefined);
    // Here, so that without WebGPU every test fails at once with this message instead of timing out.
    adapter = await page.evaluate(() => window.r3gpu.gpu()).catch((e: Error) => {
      assert.fail(`Chromium (${CHROMIUM}) found no WebGPU adapter, so nothing can run: ${e.message}\n` +
        `flags: ${CHROMIUM_ARGS.join(" ")}`);
    });
  });

  after(async () => {
    await context?.close();
    await server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test("the page names the WebGPU adapter", async (t) => {
    t.diagnostic(`adapter: ${JSON.stringify({ ...adapter, features: adapter.features.length })}`);
    const shown = await settled(page, "#gpu-info");
    assert.match(shown, /^WebGPU: /);
    if (adapter.vendor) assert.ok(shown.includes(adapter.vendor), shown);
  });

  test("loads tiny-public from the local server with Load from URL", { timeout: SLOW }, async () => {
    await page.fill("#url-input", `${server.origin}/model/`);
    await page.click("#url-load");
    const status = await settled(page, "#load-status");
    assert.match(status, /^Loaded .*: 2 layers, hidden 64, 4 heads \(2 KV\), vocab 151936;/);
    // A fresh profile: the kernel variants were measured at this load (and kept in IndexedDB).
    const kernels = OP_SLOTS.map((slot) => `${slot.replace(".", "\\.")}=\\w+`).join(", ");
    assert.match(status, new RegExp(`; kernels ${kernels} \\(measured\\)\\.$`));
    const bar = await page.$eval("#load-progress", (p) => ({ value: (p as HTMLProgressElement).value, max: (p as HTMLProgressElement).max }));
    assert.equal(bar.value, bar.max);
    // The weights came in Range slices, never as one whole-file response.
    const weights = server.requests.filter((r) => r.path === "/model/model.safetensors" && r.method === "GET");
    assert.ok(weights.length > 0 && weights.every((r) => r.status === 206), JSON.stringify(weights));
  });

  test("the golden check passes in the page (Run golden check)", { timeout: SLOW }, async (t) => {
    await page.click("#golden-run");
    const verdict = await settled(page, "#golden-status");
    t.diagnostic(verdict);
    assert.equal(await page.$eval("#golden-status", (el) => (el as HTMLElement).dataset.ok), "true", verdict);
    const rows = await page.$$eval("#golden-out tbody tr", (trs) => trs.map((tr) => tr.className));
    assert.ok(rows.length > 0 && rows.every((c) => c === "ok"), `golden table rows: ${rows}`);
  });

  test("search ranks the golden documents with the golden cosines (teacher-forced queries)", { timeout: SLOW }, async () => {
    // Through the controls: the two documents that fit on one line each.
    await page.fill("#search-query", queries[0].input);
    await page.fill("#search-documents", documents.slice(0, 2).join("\n"));
    await page.uncheck("#search-reasoning");
    await page.click("#search-run");
    await settled(page, "#search-status");
    const shown = await shownRanking(page);
    const shownScores = [0, 1].map((j) => shown.find((r) => r.index === j)!.score);
    assertRanking(shownScores, cosine[0].slice(0, 2), shown, "query 0 (controls)");

    // Through the hook: every query against all three documents (one contains a line break).
    for (const [i, q] of queries.entries()) {
      const out: SearchOutcome = await page.evaluate(
        ([query, docs]) => window.r3gpu.search({ query, documents: docs, reasoning: false }), [q.input, documents] as const);
      assertRanking(out.scores, cosine[i], out.ranked, `query ${i}`);
      assert.deepEqual(await shownRanking(page), out.ranked.map(({ index, score }) => ({ index, score })), `query ${i}: list shown`);
    }
  });

  test("a reasoning search streams the model's greedy reasoning into the page", { timeout: SLOW }, async () => {
    await page.fill("#search-query", queries[0].input);
    await page.fill("#search-documents", documents.slice(0, 2).join("\n"));
    await page.check("#search-reasoning");
    await page.fill("#search-max", "16");
    const texts = await recordTexts(page, "#search-reasoning-out");
    await page.click("#search-run");
    await settled(page, "#search-status");
    const shown = await page.textContent("#search-reasoning-out");
    assert.ok((await texts()).length >= 3, `the reasoning arrived in one piece: ${JSON.stringify(await texts())}`);
    // search-golden.json's greedy text is those 16 tokens after the query prompt (the search's reasoning prompt).
    assert.ok(shown?.startsWith(queries[0].greedy.text), `reasoning shown: ${JSON.stringify(shown)}`);
    assert.equal((await shownRanking(page)).length, 2);
  });

  test("chat streams a reply", { timeout: SLOW }, async () => {
    await page.fill("#chat-max", "8");
    await page.fill("#chat-input", "Hello! Who are you?");
    const texts = await recordTexts(page, "#chat-log");
    await page.click("#chat-send");
    const status = await settled(page, "#chat-status");
    // The user's message, the empty reply, then the reply growing a chunk at a time.
    assert.ok((await texts()).length >= 4, `the reply arrived in one piece: ${JSON.stringify(await texts())}`);
    assert.match(status, /^\d+ tokens \(stop: /);
    assert.equal(await page.locator("#chat-log .message.user").count(), 1);
    assert.equal(await page.locator("#chat-log .message.assistant").count(), 1);
  });

  test("a screenshot of the page is not blank", async (t) => {
    const path = join(repoRoot, "test-output", "browser-e2e.png");
    await mkdir(join(repoRoot, "test-output"), { recursive: true });
    const png = await page.screenshot({ fullPage: true });
    await writeFile(path, png);
    const image = decodePng(png);
    const { colours, dominantShare } = colourStats(image);
    t.diagnostic(`${path}: ${image.width}x${image.height}, ${colours} colours, background ${(dominantShare * 100).toFixed(1)}%`);
    assert.ok(image.width >= 1280 && image.height >= 900, `${image.width}x${image.height}`);
    assert.ok(colours >= 64 && dominantShare <= 0.95, `the screenshot looks blank: ${colours} colours, one covers ${dominantShare}`);
  });

  test("the tuning at load is kept in IndexedDB: loading tiny-public again measures nothing", { timeout: SLOW }, async () => {
    const summary = await page.evaluate((url) => window.r3gpu.loadFromUrl(url), `${server.origin}/model/`);
    assert.equal(summary.kernelsFrom, "cache");
  });

  // About 170 s a load on the 2-core machine when nothing else runs, twice that on a busy one (two loads here).
  test("every kernel variant the adapter supports passes the golden check in the page", { timeout: 4 * SLOW }, async (t) => {
    const choices = await page.evaluate(() => window.r3gpu.variantChoices());
    assert.ok(choices.length >= 2, JSON.stringify(choices));
    for (const choice of choices) {
      const list = Object.entries(choice).map(([slot, v]) => `${slot}=${v}`).join(",");
      const summary = await page.evaluate(([url, kernels]) => window.r3gpu.loadFromUrl(url, { kernels, tune: false }), [`${server.origin}/model/`, list] as const);
      assert.deepEqual(summary.kernels, choice);
      // The sequences of up to 33 tokens: prefill steps of more rows than a decode step, and greedy decode steps, through
      // every variant (the full set runs once above, and for every variant on Node and Deno).
      const report = await page.evaluate(() => window.r3gpu.runGolden({ maxLength: 33 }));
      const verdict = await page.textContent("#golden-status") ?? "";
      t.diagnostic(`${list}: ${verdict}`);
      assert.ok(report.sequences.length >= 3, `${report.sequences.length} sequences`);
      assert.ok(report.ok, `${list}: ${verdict}`);
    }
  });

  test("loads a folder with a safetensors file over 4 GiB through the folder picker", { timeout: SLOW }, async () => {
    await page.setInputFiles("#folder-input", join(work, "big-model"));
    const status = await settled(page, "#load-status");
    assert.match(status, /^Loaded big-model: /);
    const report = await page.evaluate(() => window.r3gpu.runGolden());
    assert.ok(report.ok, await page.textContent("#golden-status") ?? "");
    const out = await page.evaluate(([query, docs]) => window.r3gpu.search({ query, documents: docs, reasoning: false }),
      [queries[1].input, documents] as const);
    assertRanking(out.scores, cosine[1], out.ranked, "query 1 (big file)");
  });

  test("loads the same folder from a URL, reading past 4 GiB with Range requests", { timeout: SLOW }, async () => {
    await page.evaluate((url) => window.r3gpu.loadFromUrl(url), `${server.origin}/big-model/`);
    const out = await page.evaluate(([query, docs]) => window.r3gpu.search({ query, documents: docs, reasoning: false }),
      [queries[2].input, documents] as const);
    assertRanking(out.scores, cosine[2], out.ranked, "query 2 (big file by URL)");
    const reads = server.requests.filter((r) => r.path === "/big-model/model.safetensors" && r.method === "GET");
    // The loader's slices are 16 MiB today; the bound only has to be far below the 4.5 GiB file.
    assert.ok(reads.every((r) => r.status === 206 && r.bytes <= 64 * 2 ** 20), "every read is a slice of at most 64 MiB");
    assert.ok(reads.some((r) => Number(/^bytes=(\d+)-/.exec(r.range ?? "")?.[1]) > 2 ** 32), "reads past 4 GiB");
  });

  test("with the server gone, the page reopens from its service worker and loads a picked folder", { timeout: SLOW }, async () => {
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null);
    await server.close();
    await page.reload();
    await page.waitForFunction(() => window.r3gpu !== undefined);
    await page.setInputFiles("#folder-input", join(work, "big-model"));
    await settled(page, "#load-status");
    const out = await page.evaluate(([query, docs]) => window.r3gpu.search({ query, documents: docs, reasoning: false }),
      [queries[0].input, documents] as const);
    assertRanking(out.scores, cosine[0], out.ranked, "query 0 (offline)");
  });

  test("the page raised no errors and asked nothing of any other server", () => {
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(offsite, []);
  });
});
