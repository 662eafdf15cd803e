// One fuzz case, in a child process whose time and memory the driver bounds: `node child.js CASE_DIR` runs the
// target named in CASE_DIR/case.json on the files in CASE_DIR/files and writes one JSON line to stdout,
// {"accepted": true} or {"error": message}. Anything else (no line, a signal, an abort) is the driver's to classify.
import { readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { FILE_TARGETS } from "./targets/index.ts";
import type { FileCase } from "./targets/types.ts";

const dir = process.argv[2];
const c: FileCase & { target: string } = JSON.parse(readFileSync(join(dir, "case.json"), "utf8"));
const load = FILE_TARGETS[c.target];
if (!load) throw new Error(`fuzz child: no file target "${c.target}"`);
const target = await load();

let result: object;
try {
  await target.run(join(dir, "files"), c);
  result = { accepted: true };
} catch (e) {
  const message = e instanceof Error ? e.message : `a thrown ${typeof e}: ${String(e)}`;
  // Caught allocation failures are the memory bound at work, not an answer.
  const memory = e instanceof RangeError && /allocation failed|Invalid (array|string|typed array) length/i.test(message);
  result = memory ? { memory: message } : { error: message.slice(0, 4000) };
}
// Written synchronously and then exit: a GPU device or an open handle must not keep the case running.
writeSync(1, `${JSON.stringify(result)}\n`);
process.exit(0);
