// The r3gpu command line: finds the command, parses its flags against its declaration (commands.ts) and runs it.
// `r3gpu CMD --help` prints the command's help and exits 0. An error prints one line; a usage error (exit 2) then
// prints the command's usage, any other error exits 1.
import { readFileSync } from "node:fs";
import { helpText, parseArgs, suggestion, usage, UsageError, wantsHelp } from "./args.ts";
import { COMMANDS } from "./commands.ts";

function programHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.spec.name.length)) + 2;
  return [
    "usage: r3gpu <command> [arguments] [flags]",
    "",
    "commands:",
    ...COMMANDS.map((c) => `  ${c.spec.name.padEnd(width)}${c.spec.summary}`),
    "",
    "`r3gpu <command> --help` prints a command's arguments, flags and an example; `r3gpu --version` the version.",
  ].join("\n") + "\n";
}

function version(): string {
  // From dist/src/cli/ (compiled) or src/cli/ alike, the package root is where package.json is.
  for (const up of ["../../../package.json", "../../package.json"]) {
    try {
      return JSON.parse(readFileSync(new URL(up, import.meta.url), "utf8")).version;
    } catch {
      // Not this layout; try the other.
    }
  }
  throw new Error("package.json not found beside the r3gpu sources");
}

export async function run(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === "--version" || name === "-V") {
    console.log(`r3gpu ${version()}`);
    return 0;
  }
  if (name === "help" && rest.length > 0) return run([rest[0], "--help"]);
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    // Without a command, the help is the answer to a mistake: on stderr, exit 2.
    (name === undefined ? process.stderr : process.stdout).write(programHelp());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS.find((c) => c.spec.name === name);
  if (!command) {
    console.error(`r3gpu: unknown command "${name}"${suggestion(name, COMMANDS.map((c) => c.spec.name))}\n`);
    process.stderr.write(programHelp());
    return 2;
  }
  if (wantsHelp(rest)) {
    process.stdout.write(helpText(command.spec));
    return 0;
  }
  try {
    return await command.run(parseArgs(command.spec, rest));
  } catch (e) {
    const err = e as Error;
    console.error(`r3gpu ${name}: ${err.message}`);
    if (!(err instanceof UsageError)) return 1;
    console.error(`\n${usage(command.spec)}\n\n\`r3gpu ${name} --help\` also shows an example.`);
    return 2;
  }
}
