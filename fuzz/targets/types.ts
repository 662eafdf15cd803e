// What a fuzz target is: it makes cases from a seeded generator, and (for file targets) runs one case in a child
// process, where the driver bounds its time and memory.
import type { Rng } from "../rng.ts";

/** A file of a case: contents, or a link, a FIFO or a directory in its place. */
export type FileSpec = string | Uint8Array | { link: string } | { fifo: true } | { directory: true };

export interface FileCase {
  /** What was done to the seed, for the report. */
  mutation: string;
  /** Paths relative to the case folder; a path may climb out of it ("../x") to plant a file beside it. */
  files: Record<string, FileSpec>;
  /** Invalid by construction: accepting it is a defect. Cases whose validity the mutator cannot tell are false. */
  invalid: boolean;
  /** Also load the model onto the GPU (and run a token through it). */
  gpu?: boolean;
}

export interface FileTarget {
  readonly name: string;
  readonly kind: "files";
  /** Case `index` of a run; index 0 is the unmutated seed, which must be accepted. */
  generate(rng: Rng, index: number, opts: { gpuEvery: number }): FileCase;
  /** In the child process, on the case's files in `dir`; resolves when the input is accepted. */
  run(dir: string, c: FileCase): Promise<void>;
}

export const OUTCOMES = [
  "accepted", "clean-error", "accepted-invalid", "unnamed-error", "crash", "hang", "excessive-memory",
] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** The outcomes that fail a run. */
export const BAD: readonly Outcome[] = ["accepted-invalid", "unnamed-error", "crash", "hang", "excessive-memory"];

export interface CaseResult {
  target: string;
  index: number;
  mutation: string;
  outcome: Outcome;
  /** The error message (clean or unnamed), or what went wrong. */
  detail?: string;
  ms: number;
}

/**
 * Whether an error message names the input: a file of the case (by path or base name), or one of `also` (the tensor,
 * field or argument names a target's messages use).
 */
export function namesInput(message: string, dir: string, files: string[], also: readonly string[] = []): boolean {
  if (message.includes(dir)) return true;
  const base = (f: string) => f.slice(f.lastIndexOf("/") + 1);
  return files.some((f) => message.includes(base(f))) || also.some((w) => message.includes(w));
}
