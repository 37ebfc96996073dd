// Dashboard: throughput graph, active streams, download workers, segment cache, providers,
// queue counts and health, refreshed every poll (no page reloads).
import * as api from "../api.js";
import { throughputChart } from "../chart.js";
import { h, fill, rate, bytes, percent, badge, table, facts } from "../util.js";

function meter(label, fraction) {
  const value = Math.max(0, Math.min(1, fraction || 0));
  return h("div", { class: "meter-wrap" },
    h("progress", { max: 1, value, "aria-label": label }),
    h("span", {}, percent(value)));
}

function streamsTable(streams) {
  const rows = streams.map((s) => {
    const position = s.range.start + s.bytes_served;
    return h("tr", {},
      h("td", { class: "path" }, s.path),
      h("td", {}, s.client),
      h("td", { class: "num" }, rate(s.current_speed)),
      h("td", {}, `${bytes(position)} (${percent(s.progress)})`),
      h("td", { class: "num" }, s.time_to_first_byte_ms === null ? "–" : `${Math.round(s.time_to_first_byte_ms)} ms`));
  });
  return table("Active streams", ["Path", "Client", "Speed", "Position", "First byte"], rows,
    { empty: "No stream is open." });
}

function cacheTable(cache) {
  const rows = [["ram", "RAM"], ["disk", "Disk"]].map(([key, label]) => {
    const t = cache[key] || { enabled: false };
    if (!t.enabled) {
      return h("tr", { "data-tier": key }, h("th", { scope: "row" }, label),
        h("td", { colspan: 5, class: "muted" }, "off"));
    }
    const lookups = t.hits + t.misses;
    return h("tr", { "data-tier": key },
      h("th", { scope: "row" }, label),
      h("td", { class: "num hits" }, String(t.hits)),
      h("td", { class: "num misses" }, String(t.misses)),
      h("td", { class: "num" }, lookups ? percent(t.hits / lookups) : "–"),
      h("td", { class: "num served" }, bytes(t.bytes_served)),
      h("td", { class: "num size" }, `${bytes(t.size)} of ${bytes(t.limit)} (${t.entries} segments)`));
  });
  return h("div", {},
    table("Segment cache", ["Tier", "Hits", "Misses", "Hit rate", "Served", "Size"], rows),
    facts([["Shared fetches", String(cache.shared_fetches)],
      ["Sent from files", String(cache.sendfile_segments ?? 0)]]));
}

function providersTable(list) {
  const rows = list.map((p) => {
    const c = p.connections || {};
    const st = p.statistics;
    const errors = st ? Object.values(st.errors).reduce((a, b) => a + b, 0) : 0;
    const missingRate = st && st.articles + st.articles_missing > 0
      ? st.articles_missing / (st.articles + st.articles_missing) : 0;
    return h("tr", {},
      h("th", { scope: "row" }, p.name),
      h("td", {}, badge(p.status), " ", h("span", { class: "muted" }, p.reason)),
      h("td", { class: "num" }, `${c.active ?? 0} / ${c.idle ?? 0} / ${c.max ?? 0}`),
      h("td", { class: "num" }, st ? st.avg_speed_human : "–"),
      h("td", { class: "num" }, String(errors)),
      h("td", { class: "num" }, percent(missingRate, 1)));
  });
  return table("Providers", ["Provider", "Status", "Active / idle / max", "Speed", "Errors", "430 rate"], rows,
    { empty: "No provider is configured." });
}

function healthList(report) {
  const components = report.components || {};
  const items = Object.entries(components).map(([name, part]) =>
    h("li", {}, badge(part.status), " ", h("strong", {}, name), ": ", part.reason));
  return h("ul", { class: "plain" }, items);
}

export default {
  title: "Dashboard",
  mount(root, { sampler, windowSeconds, pollMs }) {
    const now = h("output", { class: "big", id: "throughput-now", "aria-live": "off" }, "–");
    const graph = h("div", { class: "graph" });
    const workers = h("div", { id: "workers" });
    const streams = h("div", { id: "streams" });
    const cache = h("div", { id: "cache" });
    const providers = h("div", { id: "providers" });
    const queue = h("div", { id: "queue-counts" });
    const health = h("div", { id: "health" });
    const status = h("p", { class: "muted", role: "status" });
    fill(root,
      h("h1", {}, "Dashboard"),
      status,
      h("div", { class: "grid" },
        h("section", { class: "card wide", "aria-labelledby": "t-title" },
          h("h2", { id: "t-title" }, "Throughput"),
          h("p", {}, now, h("span", { class: "muted" }, " served to clients")),
          graph),
        h("section", { class: "card", "aria-labelledby": "w-title" }, h("h2", { id: "w-title" }, "Download workers"), workers),
        h("section", { class: "card", "aria-labelledby": "q-title" }, h("h2", { id: "q-title" }, "Queue"), queue),
        h("section", { class: "card wide", "aria-labelledby": "s-title" }, h("h2", { id: "s-title" }, "Active streams"), streams),
        h("section", { class: "card wide", "aria-labelledby": "c-title" }, h("h2", { id: "c-title" }, "Segment cache"), cache),
        h("section", { class: "card wide", "aria-labelledby": "p-title" }, h("h2", { id: "p-title" }, "Providers"), providers),
        h("section", { class: "card wide", "aria-labelledby": "h-title" }, h("h2", { id: "h-title" }, "Health"), health)));

    function showStreaming(answer, error) {
      if (error) {
        status.textContent = `Could not read streaming statistics: ${error.message}`;
        return;
      }
      const w = answer.workers;
      now.textContent = rate(answer.totals.current_speed);
      fill(graph, throughputChart(sampler.samples, Date.now() / 1000, windowSeconds, graph.clientWidth));
      fill(workers, meter("Download worker utilization", w.utilization),
        facts([["Busy", `${w.active} of ${w.max}`], ["Waiting", String(w.queued)],
          ["Served since start", bytes(answer.totals.bytes_served_total)],
          ["Streams since start", String(answer.totals.streams_total)]]));
      fill(streams, streamsTable(answer.streams));
      if (answer.cache) fill(cache, cacheTable(answer.cache));
    }

    async function refresh() {
      const [prov, stats, report] = await Promise.allSettled([
        api.get("/api/providers"), api.get("/api/queue/stats"), api.health(),
      ]);
      if (prov.status === "fulfilled") fill(providers, providersTable(prov.value.providers));
      if (stats.status === "fulfilled") {
        const c = stats.value.counts;
        fill(queue, facts([["Pending", c.pending], ["Processing", c.processing], ["Completed", c.completed],
          ["Failed", c.failed], ["Paused", c.paused], ["Total", c.total]].map(([k, v]) => [k, String(v)])),
        h("p", { class: "muted" }, stats.value.performance.imports_counted
          ? `Average import ${Math.round(stats.value.performance.avg_import_ms)} ms` : "No import timed yet"));
      } else if (stats.reason.status === 503) {
        fill(queue, h("p", { class: "muted" }, stats.reason.message));
      }
      if (report.status === "fulfilled") {
        fill(health, h("p", {}, "Overall: ", badge(report.value.status)), healthList(report.value));
      }
      const failed = [prov, stats, report].filter((r) => r.status === "rejected" && r.reason.status !== 503);
      status.textContent = failed.length ? `Some figures could not be read: ${failed[0].reason.message}` : "";
    }

    sampler.listeners.add(showStreaming);
    if (sampler.latest) showStreaming(sampler.latest);
    refresh();
    const timer = setInterval(refresh, pollMs);
    return () => {
      clearInterval(timer);
      sampler.listeners.delete(showStreaming);
    };
  },
};
