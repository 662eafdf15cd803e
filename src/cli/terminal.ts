// Whether stderr is a person's terminal: progress bars, streamed reasoning and statistics go to stderr only then, so
// that logs and pipes get results alone. bin/r3gpu.js runs the CLI in a child process whose stderr is a pipe to the
// launcher (launch.ts), so there the answer is the launcher's, which it passes on.
let stderrTerminal = Boolean(process.stderr.isTTY);

export function stderrIsTTY(): boolean {
  return stderrTerminal;
}

/** Called by the launcher's child: its own stderr is a pipe, the launcher's may be a terminal. */
export function setStderrIsTTY(tty: boolean): void {
  stderrTerminal = tty;
}
