// Progress on stderr: a redrawn bar on a terminal, nothing when stderr is not one (logs stay clean).
import { stderrIsTTY } from "./terminal.ts";

export class Progress {
  private last = 0;
  private readonly start = performance.now();
  private readonly tty = stderrIsTTY();

  constructor(private label: string) {}

  /** `note`: further figures shown after the ETA, such as rates. */
  update(done: number, total: number, unit = "", note = ""): void {
    if (!this.tty) return;
    const now = performance.now();
    if (now - this.last < 100 && done < total) return;
    this.last = now;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const width = 30;
    const bar = "#".repeat(Math.round(frac * width)).padEnd(width, ".");
    const secs = (now - this.start) / 1000;
    const eta = frac > 0 ? secs / frac - secs : 0;
    // ESC[K clears what a longer earlier redraw left at the end of the line.
    process.stderr.write(`\r${this.label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${fmt(done, unit)}/${fmt(total, unit)}` +
      ` ${secs.toFixed(1)}s eta ${eta.toFixed(1)}s ${note ? `${note} ` : ""}\x1b[K`);
  }

  done(): void {
    if (this.tty) process.stderr.write("\n");
  }
}

function fmt(n: number, unit: string): string {
  if (unit === "B") return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
  return `${n}${unit}`;
}
