// What bin/r3gpu.js runs. Dawn prints two warnings on every adapter request ("maxDynamicUniformBuffersPerPipelineLayout
// artificially reduced ..." and the same for storage buffers), from native code (dawn::WarningLog in
// src/dawn/native/Limits.cpp) straight to file descriptor 2, whatever limits are requested; JavaScript cannot intercept
// such writes. So the launcher runs the CLI in a child process whose stderr is a pipe, and forwards every line of it
// but exactly those two, as it arrives. stdin and stdout are the child's own (inherited), so reading a terminal and
// piping results work as before.
import { spawn } from "node:child_process";
import { constants } from "node:os";
import { isatty } from "node:tty";
import { setStderrIsTTY } from "./terminal.ts";

/** The two lines dropped; nothing else Dawn or anyone prints is. They only say that Dawn caps a limit r3gpu never nears. */
const DAWN_LIMIT_WARNING =
  /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;
const WARNING_START = "Warning: maxDynamic";

/**
 * The child's stderr minus DAWN_LIMIT_WARNING lines. Text passes on at once, unbuffered, except the start of a line
 * that may still turn out to be one of those warnings, which waits for its end (Dawn writes each warning whole).
 * Progress bars, which redraw one line with "\r" and never end it, therefore pass as they are drawn.
 */
export class DawnWarningFilter {
  private held = "";
  /** The line being received has already been passed on in part, so the rest of it passes too. */
  private passing = false;

  push(chunk: string): string {
    let text = this.held + chunk;
    this.held = "";
    let out = "";
    while (text !== "") {
      const nl = text.indexOf("\n");
      if (this.passing) {
        if (nl < 0) return out + text;
        out += text.slice(0, nl + 1);
        this.passing = false;
      } else if (nl >= 0) {
        const line = text.slice(0, nl);
        if (!DAWN_LIMIT_WARNING.test(line)) out += `${line}\n`;
      } else if (WARNING_START.startsWith(text) || text.startsWith(WARNING_START)) {
        this.held = text;
        return out;
      } else {
        this.passing = true;
        return out + text;
      }
      text = text.slice(nl + 1);
    }
    return out;
  }

  /** What is held when the stream ends: an unfinished line is no warning. */
  end(): string {
    const rest = this.held;
    this.held = "";
    return rest;
  }
}

// Set by the launcher for its child: the launcher's pid (so that a stray copy of the variable in someone's
// environment cannot make a process think it is the child) and whether the launcher's stderr is a terminal.
const CHILD_OF = "R3GPU_LAUNCHER_PID";
const STDERR_TTY = "R3GPU_STDERR_TTY";
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/** Runs the CLI on `argv`: in this process when it is the launcher's child, else in a child of this one. */
export async function launch(script: string, argv: string[]): Promise<void> {
  if (process.env[CHILD_OF] === String(process.ppid)) {
    setStderrIsTTY(process.env[STDERR_TTY] === "1");
    delete process.env[CHILD_OF];
    delete process.env[STDERR_TTY];
    // The IPC channel is there only to tell the child that the launcher is gone: killed with SIGKILL, which it cannot
    // pass on, the launcher must not leave the command running on its own (an indexing run would go on writing).
    process.channel?.unref();
    process.on("disconnect", () => process.kill(process.pid, "SIGKILL"));
    const { run } = await import("./main.ts");
    process.exitCode = await run(argv);
    return;
  }

  const child = spawn(process.execPath, [...process.execArgv, script, ...argv], {
    stdio: ["inherit", "inherit", "pipe", "ipc"],
    env: { ...process.env, [CHILD_OF]: String(process.pid), [STDERR_TTY]: isatty(2) ? "1" : "0" },
  });
  const filter = new DawnWarningFilter();
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    const out = filter.push(chunk);
    if (out !== "" && !process.stderr.write(out)) {
      child.stderr!.pause();
      process.stderr.once("drain", () => child.stderr!.resume());
    }
  });
  child.stderr!.on("end", () => process.stderr.write(filter.end()));

  // On a terminal, Ctrl-C (SIGINT) and a hangup reach the whole foreground process group, the child as well as this
  // process: passing them on would deliver each twice (and a chat would take one Ctrl-C for two). Then this process
  // only waits for the child. Signals sent to this process alone (SIGTERM always; any signal without a terminal: a
  // test, a supervisor, `kill`) are passed on.
  const terminal = isatty(0) || isatty(1) || isatty(2);
  const forward = (signal: NodeJS.Signals) => {
    if (signal === "SIGTERM" || !terminal) child.kill(signal);
  };
  for (const s of SIGNALS) process.on(s, forward);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((done, fail) => {
    child.on("error", fail);
    child.on("close", (c, s) => done([c, s]));
  });
  for (const s of SIGNALS) process.off(s, forward);
  if (signal === null) {
    process.exitCode = code ?? 1;
    return;
  }
  // Dying of the child's signal tells the shell what happened to the command (e.g. that Ctrl-C ended it); the exit
  // code is the shell's convention for it, where the signal does not end this process (Node ignores SIGPIPE).
  process.exitCode = 128 + constants.signals[signal];
  process.kill(process.pid, signal);
}
