// The throughput graph: an SVG line over the last `windowSeconds` of samples.
import { rate } from "./util.js";

const SVG = "http://www.w3.org/2000/svg";
const H = 170;
const PAD = { left: 8, right: 8, top: 10, bottom: 18 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** A round top for the y axis: 1, 2 or 5 times a power of ten, in KiB, MiB or GiB. */
function ceiling(max) {
  if (max <= 0) return 1024 * 1024;
  let unit = 1024;
  while (max / unit >= 1024) unit *= 1024;
  for (const step of [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]) {
    if (step * unit >= max) return step * unit;
  }
  return 1024 * unit;
}

/** Draw `samples` ([{t: seconds, v: bytes/s}]) ending at `now` into a new <svg>. */
export function throughputChart(samples, now, windowSeconds = 600, width = 600) {
  const W = Math.max(200, Math.round(width));
  const top = ceiling(Math.max(0, ...samples.map((s) => s.v)));
  const last = samples.length ? samples[samples.length - 1].v : 0;
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    class: "chart",
    role: "img",
    "aria-label": `Throughput over the last ${windowSeconds / 60} minutes; now ${rate(last)}, peak ${rate(Math.max(0, ...samples.map((s) => s.v)))}`,
  });
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + plotW * (1 - (now - t) / windowSeconds);
  const y = (v) => PAD.top + plotH * (1 - v / top);
  for (const frac of [0, 0.5, 1]) {
    root.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(top * frac), y2: y(top * frac), class: "gridline" }));
  }
  root.append(svg("text", { x: PAD.left + 4, y: y(top) + 12, class: "axis" }, rate(top)));
  root.append(svg("text", { x: PAD.left + 4, y: y(top / 2) + 12, class: "axis" }, rate(top / 2)));
  root.append(svg("text", { x: PAD.left, y: H - 4, class: "axis" }, `−${windowSeconds / 60} min`));
  root.append(svg("text", { x: W / 2, y: H - 4, class: "axis", "text-anchor": "middle" }, `−${windowSeconds / 120} min`));
  root.append(svg("text", { x: W - PAD.right, y: H - 4, class: "axis", "text-anchor": "end" }, "now"));
  const shown = samples.filter((s) => now - s.t <= windowSeconds);
  if (shown.length > 1) {
    const points = shown.map((s) => `${x(s.t).toFixed(1)},${y(s.v).toFixed(1)}`);
    const first = x(shown[0].t).toFixed(1);
    const end = x(shown[shown.length - 1].t).toFixed(1);
    const base = y(0).toFixed(1);
    root.append(svg("polygon", { points: `${first},${base} ${points.join(" ")} ${end},${base}`, class: "area" }));
    root.append(svg("polyline", { points: points.join(" "), class: "line" }));
  }
  return root;
}
