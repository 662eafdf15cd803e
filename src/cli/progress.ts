// Progress on stderr: a redrawn bar on a terminal. When stderr is not one (a log), nothing, unless the command asks
// for a plain line every so many seconds, so that a long logged run is not silent.
import { stderrIsTTY } from "./terminal.ts";

export interface ProgressOptions {
  /** Off a terminal, a line every this many seconds (from the start); default: none. */
  logEvery?: number;
}

export class Progress {
  private last = 0;
  private readonly start = performance.now();
  private lastLine = this.start;
  private readonly tty = stderrIsTTY();

  constructor(private label: string, private readonly opts: ProgressOptions = {}) {}

  /** `note`: further figures shown after the ETA, such as rates. */
  update(done: number, total: number, unit = "", note = ""): void {
    const now = performance.now();
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const secs = (now - this.start) / 1000;
    const eta = frac > 0 ? secs / frac - secs : 0;
    const figures = `${(frac * 100).toFixed(0).padStart(3)}% ${fmt(done, unit)}/${fmt(total, unit)} ${secs.toFixed(1)}s ` +
      `eta ${frac > 0 ? `${eta.toFixed(1)}s` : "?"}${note ? ` ${note}` : ""}`;
    if (!this.tty) {
      const every = this.opts.logEvery;
      if (every === undefined || now - this.lastLine < every * 1000 || done >= total) return;
      this.lastLine = now;
      process.stderr.write(`${this.label}: ${figures.trimStart()}\n`);
      return;
    }
    if (now - this.last < 100 && done < total) return;
    this.last = now;
    const width = 30;
    const bar = "#".repeat(Math.round(frac * width)).padEnd(width, ".");
    // ESC[K clears what a longer earlier redraw left at the end of the line.
    process.stderr.write(`\r${this.label} [${bar}] ${figures} \x1b[K`);
  }

  done(): void {
    if (this.tty) process.stderr.write("\n");
  }
}

function fmt(n: number, unit: string): string {
  if (unit === "B") return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
  return `${n}${unit}`;
}
