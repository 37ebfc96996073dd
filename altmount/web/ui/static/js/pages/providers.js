// Providers: the table of /api/providers and a Test button per provider
// (POST /api/providers/{name}/test) showing round trip and download speed.
import * as api from "../api.js";
import { h, fill, badge, table, percent, keepFocus } from "../util.js";

function testResult(result) {
  if (!result) return "";
  if (result.pending) return h("span", { class: "muted" }, "Testing…");
  if (!result.ok) return h("span", { class: "error-text" }, `${result.error.kind}: ${result.error.message}`);
  const download = result.download || {};
  return h("span", {},
    badge("ok"), ` RTT ${result.rtt_ms.avg} ms (min ${result.rtt_ms.min}, max ${result.rtt_ms.max})`,
    download.speed_human ? ` · ${download.speed_human} (${download.articles} articles)` : ` · ${download.skipped || ""}`,
    result.note ? h("div", { class: "muted small" }, result.note) : null);
}

export default {
  title: "Providers",
  mount(root, { pollMs }) {
    const results = new Map();
    const list = h("div", { id: "p-list" });
    fill(root, h("h1", {}, "Providers"), h("section", { class: "card" }, list));
    let providers = [];

    function draw() {
      const rows = providers.map((p) => {
        const c = p.connections || {};
        const st = p.statistics;
        const errors = st ? Object.entries(st.errors).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(", ") || "none" : "–";
        const missing = st && st.articles + st.articles_missing > 0 ? st.articles_missing / (st.articles + st.articles_missing) : 0;
        const name = encodeURIComponent(p.name);
        return h("tr", {},
          h("th", { scope: "row" }, p.name, p.is_backup_provider ? h("div", { class: "muted small" }, "backup") : null),
          h("td", { class: "small" }, `${p.host}:${p.port}${p.tls ? " (TLS)" : ""}`),
          h("td", {}, badge(p.enabled ? p.status : "disabled"), h("div", { class: "muted small" }, p.enabled ? p.reason : p.disabled_reason)),
          h("td", { class: "num" }, c.max === undefined ? "–" : `${c.active} / ${c.idle} / ${c.max}`),
          h("td", { class: "num" }, st ? st.avg_speed_human : "–"),
          h("td", { class: "num" }, st ? (st.last_rtt_ms === null ? "–" : `${st.last_rtt_ms.toFixed(1)} ms`) : "–"),
          h("td", { class: "small" }, errors),
          h("td", { class: "num" }, percent(missing, 1)),
          h("td", { class: "actions" },
            h("button", { type: "button", dataset: { focus: `test-${p.name}` }, "aria-label": `Test ${p.name}`, disabled: !p.enabled || results.get(p.name)?.pending,
              onclick: () => test(p.name, name) }, "Test"),
            h("div", { class: "test-result", "aria-live": "polite" }, testResult(results.get(p.name)))));
      });
      keepFocus(() => fill(list, table("Providers", ["Name", "Host", "Status", "Active / idle / max", "Speed", "RTT", "Errors", "430 rate", "Test"], rows,
        { empty: "No provider is configured." })));
    }

    async function test(name, encoded) {
      results.set(name, { pending: true });
      draw();
      try {
        results.set(name, await api.post(`/api/providers/${encoded}/test`));
      } catch (error) {
        results.set(name, { ok: false, error: { kind: error.code, message: error.message } });
      }
      draw();
    }

    async function refresh() {
      try {
        providers = (await api.get("/api/providers")).providers;
        draw();
      } catch (error) {
        fill(list, h("p", { class: "error-text", role: "alert" }, error.message));
      }
    }
    refresh();
    const timer = setInterval(refresh, pollMs);
    return () => clearInterval(timer);
  },
};
