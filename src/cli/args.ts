// Flag parsing shared by the chat, embed, tokenize and download commands: every malformed flag is a UsageError (exit 2).
import { parseArgs, type ParseArgsConfig } from "node:util";

/** A malformed command line: reported with the usage text and exit code 2. */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig["options"]>;
type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>>;

export function parseCommand<O extends Options>(args: string[], options: O, positionals: number, usage: string): Parsed<O> {
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(`${usage} (got ${parsed.positionals.length} positional argument(s))`);
  }
  return parsed;
}

export function integerFlag(value: string | undefined, flag: string, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\s*-?\d+\s*$/.test(value) || n < min || !Number.isSafeInteger(n)) {
    throw new UsageError(`${flag} must be an integer >= ${min}, got "${value}"`);
  }
  return n;
}

/** `test` says what the number must be, for the message, and whether it is. */
export function numberFlag(value: string | undefined, flag: string, rule: string, test: (n: number) => boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || !test(n)) throw new UsageError(`${flag} must be ${rule}, got "${value}"`);
  return n;
}
