// An SVG bar chart of a per-query measure (e.g. nDCG@10), queries sorted from best to worst, with the mean.

export interface BarChartOptions {
  title: string;
  /** The measure's name, for the y axis. */
  measure: string;
}

/** Bars for `values` (query id -> value in [0, 1]), best first; ids label the bars while there are few enough. */
export function perQuerySvg(values: Record<string, number>, opts: BarChartOptions): string {
  const entries = Object.entries(values).sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0));
  const n = entries.length;
  const mean = n > 0 ? entries.reduce((s, [, v]) => s + v, 0) / n : 0;
  const labelled = n <= 60;
  const bar = Math.max(2, Math.min(24, Math.floor(900 / Math.max(1, n))));
  const left = 56;
  const top = 40;
  const height = 240;
  const bottom = labelled ? 90 : 30;
  const width = left + n * bar + 40;
  const y = (v: number) => top + height * (1 - Math.min(1, Math.max(0, v)));
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${Math.max(width, 360)}" height="${top + height + bottom}" ` +
    `font-family="sans-serif" font-size="11">`);
  out.push(`<text x="${left}" y="20" font-size="13">${escape(opts.title)} (${n} queries, mean ${mean.toFixed(4)})</text>`);
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    out.push(`<line x1="${left}" x2="${left + n * bar}" y1="${y(tick)}" y2="${y(tick)}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${y(tick) + 4}" text-anchor="end">${tick}</text>`);
  }
  out.push(`<text transform="translate(14 ${top + height / 2}) rotate(-90)" text-anchor="middle">${escape(opts.measure)}</text>`);
  entries.forEach(([id, v], i) => {
    const x = left + i * bar;
    out.push(`<rect x="${x + 0.5}" y="${y(v)}" width="${Math.max(1, bar - 1)}" height="${top + height - y(v)}" fill="#4878d0">` +
      `<title>${escape(id)}: ${v.toFixed(4)}</title></rect>`);
    if (labelled) {
      out.push(`<text transform="translate(${x + bar / 2 + 3} ${top + height + 6}) rotate(60)">${escape(id)}</text>`);
    }
  });
  out.push(`<line x1="${left}" x2="${left + n * bar}" y1="${y(mean)}" y2="${y(mean)}" stroke="#d65f5f" stroke-dasharray="4 3"/>`);
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + height}" stroke="#333"/>`);
  out.push("</svg>");
  return out.join("\n") + "\n";
}

function escape(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);
}
