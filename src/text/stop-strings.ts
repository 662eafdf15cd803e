// Stop strings in streamed text: generation ends once the text holds one, and nothing that a stop string could
// still turn out to start is shown before it is settled.

/**
 * Accumulates the generated text, finds the first stop string in it, and releases only text that no stop string
 * can still claim: a tail that is the start of a stop string is held back until the next chunk settles it.
 */
export class StopStringScanner {
  text = "";
  stopString: string | undefined;
  private emitted = 0;
  private readonly longest: number;

  constructor(private readonly stopStrings: readonly string[]) {
    this.longest = Math.max(0, ...stopStrings.map((s) => s.length));
  }

  /** Adds decoded text; returns what may be shown now. */
  push(chunk: string): string {
    if (!chunk) return "";
    // Earlier text held no stop string, so a match must end inside the new chunk.
    const from = Math.max(0, this.text.length - this.longest + 1);
    this.text += chunk;
    let at = -1;
    for (const s of this.stopStrings) {
      const i = s === "" ? -1 : this.text.indexOf(s, from);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        this.stopString = s;
      }
    }
    if (at >= 0) this.text = this.text.slice(0, at);
    const safe = at >= 0 ? this.text.length : this.text.length - this.heldBack();
    return this.release(safe);
  }

  /** The rest of the text, once no more is coming. */
  end(): string {
    return this.release(this.text.length);
  }

  private release(upTo: number): string {
    if (upTo <= this.emitted) return "";
    const out = this.text.slice(this.emitted, upTo);
    this.emitted = upTo;
    return out;
  }

  private heldBack(): number {
    let hold = 0;
    for (const s of this.stopStrings) {
      for (let n = Math.min(s.length - 1, this.text.length - this.emitted); n > hold; n--) {
        if (this.text.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    return hold;
  }
}

