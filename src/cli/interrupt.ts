// Ctrl-C (SIGINT) and SIGTERM during a command that writes: the first asks the work to stop where what is done can
// be kept (an AbortSignal), a second exits at once. Either way the exit code is the shell's for the signal.
import { constants } from "node:os";

const SIGNALS = ["SIGINT", "SIGTERM"] as const;

export class Interrupt {
  private readonly controller = new AbortController();
  private received?: NodeJS.Signals;
  private readonly handler = (signal: NodeJS.Signals) => {
    if (this.received) process.exit(this.exitCode);
    this.received = signal;
    this.onFirst(signal);
    this.controller.abort();
  };

  /** `onFirst` says what happens now (and, typically, that a second signal exits at once). */
  constructor(private readonly onFirst: (signal: NodeJS.Signals) => void) {
    for (const s of SIGNALS) process.on(s, this.handler);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** 128 + the signal's number (130 for SIGINT, 143 for SIGTERM); undefined while none has come. */
  get exitCode(): number | undefined {
    return this.received && 128 + constants.signals[this.received];
  }

  /** Back to the default: a signal ends the process. */
  dispose(): void {
    for (const s of SIGNALS) process.off(s, this.handler);
  }
}
