// A small SVG line chart: clicks and leads per day. No dependencies.
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

/** Draws `series` ([{values, color}]) over `labels` into a new <svg>. */
export function lineChart(labels, series) {
  const w = 600, h = 220, pad = { l: 36, r: 8, t: 10, b: 24 };
  const svg = el("svg", { viewBox: `0 0 ${w} ${h}`, role: "img" });
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const x = (i) => pad.l + (labels.length <= 1 ? 0 : (i * (w - pad.l - pad.r)) / (labels.length - 1));
  const y = (v) => h - pad.b - (v * (h - pad.t - pad.b)) / max;
  for (const frac of [0, 0.5, 1]) {
    const value = Math.round(max * frac);
    svg.append(el("line", { x1: pad.l, x2: w - pad.r, y1: y(value), y2: y(value), stroke: "#e2e6ec" }));
    const t = el("text", { x: pad.l - 4, y: y(value) + 4, "text-anchor": "end", "font-size": 10, fill: "#5b6776" });
    t.textContent = String(value);
    svg.append(t);
  }
  labels.forEach((label, i) => {
    if (labels.length > 10 && i % 5 !== 0 && i !== labels.length - 1) return;
    const t = el("text", { x: x(i), y: h - 6, "text-anchor": "middle", "font-size": 10, fill: "#5b6776" });
    t.textContent = label.slice(5);
    svg.append(t);
  });
  for (const s of series) {
    const points = s.values.map((v, i) => `${x(i)},${y(v)}`).join(" ");
    svg.append(el("polyline", { points, fill: "none", stroke: s.color, "stroke-width": 2 }));
  }
  return svg;
}
