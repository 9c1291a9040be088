// A small SVG line chart (no dependency): axes with ticks, linear or log x, one polyline per series,
// a legend. Enough for the benchmark's charts (charts.ts); readable in a browser and on GitHub.

export interface Series {
  name: string;
  points: readonly (readonly [number, number])[];
  /** drawn thicker, first in the legend */
  strong?: boolean;
}

export interface ChartSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  /** fixed axis ranges (default: the data's) */
  x?: [number, number];
  y?: [number, number];
  series: Series[];
  /** horizontal reference lines (a target), labelled */
  hLines?: { y: number; label: string }[];
}

const W = 760;
const H = 420;
const M = { left: 64, right: 190, top: 52, bottom: 48 };
const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1000) return `${Math.round(v / 100) / 10}k`.replace('.0k', 'k');
  if (a >= 10) return String(Math.round(v));
  if (a >= 1) return String(Math.round(v * 10) / 10);
  return String(Number(v.toPrecision(2)));
}

/** About `n` round ticks over [lo, hi]. */
function linearTicks(lo: number, hi: number, n = 6): number[] {
  const span = hi - lo || 1;
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const k of [1, 2, 5]) {
      const v = k * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(Number(v.toPrecision(6)));
    }
  }
  return out;
}

export function lineChart(spec: ChartSpec): string {
  const pts = spec.series.flatMap((s) => s.points);
  const xs = pts.map((p) => p[0]).filter((v) => Number.isFinite(v) && (!spec.xLog || v > 0));
  const ys = pts.map((p) => p[1]).filter(Number.isFinite);
  let [x0, x1] = spec.x ?? [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = spec.y ?? [Math.min(0, ...ys), Math.max(...ys, ...(spec.hLines ?? []).map((h) => h.y))];
  if (!Number.isFinite(x0) || !Number.isFinite(x1)) [x0, x1] = [spec.xLog ? 0.01 : 0, 1];
  if (x0 === x1) x1 = x0 * 2 || 1;
  if (!Number.isFinite(y0) || !Number.isFinite(y1) || y0 === y1) [y0, y1] = [0, (y1 || 0) + 1];
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const fx = spec.xLog
    ? (v: number): number => M.left + ((Math.log10(Math.max(v, x0)) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0))) * pw
    : (v: number): number => M.left + ((v - x0) / (x1 - x0)) * pw;
  const fy = (v: number): number => M.top + ph - ((v - y0) / (y1 - y0)) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="${M.left}" y="22" font-size="15" font-weight="bold">${esc(spec.title)}</text>`);
  if (spec.subtitle) out.push(`<text x="${M.left}" y="40" fill="#555">${esc(spec.subtitle)}</text>`);
  // grid and ticks
  for (const t of spec.xLog ? logTicks(x0, x1) : linearTicks(x0, x1)) {
    const x = fx(t).toFixed(1);
    out.push(`<line x1="${x}" y1="${M.top}" x2="${x}" y2="${M.top + ph}" stroke="#eee"/>`);
    out.push(`<text x="${x}" y="${M.top + ph + 16}" text-anchor="middle" fill="#333">${fmt(t)}</text>`);
  }
  for (const t of linearTicks(y0, y1)) {
    const y = fy(t).toFixed(1);
    out.push(`<line x1="${M.left}" y1="${y}" x2="${M.left + pw}" y2="${y}" stroke="#eee"/>`);
    out.push(`<text x="${M.left - 6}" y="${y}" dy="4" text-anchor="end" fill="#333">${fmt(t)}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 10}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yLabel)}</text>`);
  for (const h of spec.hLines ?? []) {
    if (h.y < y0 || h.y > y1) continue;
    const y = fy(h.y).toFixed(1);
    out.push(`<line x1="${M.left}" y1="${y}" x2="${M.left + pw}" y2="${y}" stroke="#000" stroke-dasharray="5 4"/>`);
    out.push(`<text x="${M.left + pw - 4}" y="${y}" dy="-4" text-anchor="end">${esc(h.label)}</text>`);
  }
  // series, clipped to the plot
  out.push(`<clipPath id="plot"><rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}"/></clipPath>`);
  const order = [...spec.series.entries()].sort(([, a], [, b]) => Number(!!b.strong) - Number(!!a.strong));
  // strong series drawn last: on top of the others (the legend lists them first)
  for (const [i, s] of [...order].reverse()) {
    const d = s.points
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!spec.xLog || x > 0))
      .map(([x, y], k) => `${k ? 'L' : 'M'}${fx(x).toFixed(1)} ${fy(Math.min(Math.max(y, y0), y1)).toFixed(1)}`)
      .join('');
    if (!d) continue;
    out.push(`<path d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="${s.strong ? 2.5 : 1.4}" clip-path="url(#plot)"/>`);
  }
  // legend
  order.forEach(([i, s], k) => {
    const y = M.top + 8 + k * 18;
    const x = M.left + pw + 14;
    out.push(`<line x1="${x}" y1="${y}" x2="${x + 22}" y2="${y}" stroke="${COLORS[i % COLORS.length]}" stroke-width="${s.strong ? 2.5 : 1.4}"/>`);
    out.push(`<text x="${x + 28}" y="${y}" dy="4">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
