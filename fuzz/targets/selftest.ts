// Cases with known outcomes, one of each class, so that a test can check the harness itself: that its time and memory
// bounds are real and that it tells the outcomes apart. Not among the default targets.
import type { FileTarget } from "./types.ts";

const CASES: [string, () => Promise<void>][] = [
  ["accepted", async () => {}],
  ["clean-error", async () => { throw new Error("selftest/input.json: a clean error"); }],
  ["unnamed-error", async () => { throw new Error("something went wrong"); }],
  ["hang", () => new Promise(() => { for (;;); })],
  ["excessive-memory (heap)", async () => {
    const keep: number[][] = [];
    for (;;) keep.push(new Array(1 << 20).fill(keep.length));
  }],
  ["excessive-memory (address space)", async () => {
    const keep: Uint8Array[] = [];
    for (;;) keep.push(new Uint8Array(256 << 20));
  }],
  ["crash", async () => process.abort()],
];

export const selftestTarget: FileTarget = {
  name: "selftest",
  kind: "files",
  generate: (_rng, index) => ({ mutation: CASES[index % CASES.length][0], files: { "input.json": "{}" }, invalid: false }),
  run: (_dir, c) => CASES.find(([name]) => name === c.mutation)![1](),
};
