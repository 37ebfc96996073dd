// Config: the effective configuration (secrets come masked from GET /api/config), the
// operator guide's presets next to the current values, and a reload button.
import * as api from "../api.js";
import { h, fill, bytes, table, facts, notify } from "../util.js";
import { PRESETS, PRESET_KEYS } from "../presets.js";

function lookup(config, dotted) {
  return dotted.split(".").reduce((node, key) => (node && typeof node === "object" ? node[key] : undefined), config);
}

function show(key, value) {
  if (value === undefined) return "–";
  if (typeof value === "number" && /size$/.test(key)) return `${bytes(value)}`;
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function text(value) {
  return value !== null && typeof value === "object" ? JSON.stringify(value) : String(value);
}

/** One config section: its keys as a list; a list of entries (providers) one per block. */
function section(name, value) {
  if (Array.isArray(value)) {
    return h("details", { open: true }, h("summary", {}, `${name} (${value.length})`),
      value.length ? value.map((entry, i) => h("div", { class: "entry" }, h("h3", { class: "small" }, entry.name || `#${i + 1}`),
        facts(Object.entries(entry).map(([key, v]) => [key, text(v)]))))
        : h("p", { class: "muted" }, "none"));
  }
  if (value && typeof value === "object") {
    return h("details", { open: true }, h("summary", {}, name), facts(Object.entries(value).map(([key, v]) => [key, text(v)])));
  }
  return h("details", { open: true }, h("summary", {}, name), h("p", {}, text(value)));
}

export default {
  title: "Config",
  mount(root) {
    const presets = h("div", { id: "c-presets" });
    const effective = h("div", { id: "c-effective" });
    const result = h("p", { role: "status", class: "muted" });
    fill(root, h("h1", {}, "Config"),
      h("section", { class: "card", "aria-labelledby": "pr-title" },
        h("h2", { id: "pr-title" }, "Tuning presets"),
        h("p", { class: "muted" }, "The operator guide's presets next to the current values; differences are marked. Edit the YAML file, then reload."),
        presets,
        h("div", { class: "toolbar" }, h("button", { type: "button", id: "c-reload", onclick: reload }, "Reload config file")), result),
      h("section", { class: "card", "aria-labelledby": "ef-title" }, h("h2", { id: "ef-title" }, "Effective configuration"), effective));

    async function reload() {
      try {
        const answer = await api.post("/api/config/reload");
        result.textContent = `Applied: ${answer.applied.join(", ") || "nothing"}; restart needed for: ${answer.restart_required.join(", ") || "nothing"}${answer.warnings.length ? `; warnings: ${answer.warnings.join("; ")}` : ""}`;
        load();
      } catch (error) {
        result.textContent = "";
        notify(error.message, "error");
      }
    }

    async function load() {
      try {
        const config = await api.get("/api/config");
        const rows = PRESET_KEYS.map((key) => {
          const current = lookup(config, key);
          return h("tr", {}, h("th", { scope: "row" }, key), h("td", { class: "current" }, show(key, current)),
            PRESETS.map((preset) => {
              const value = preset.values[key];
              const differs = value !== undefined && value !== current;
              return h("td", { class: differs ? "differs" : "" }, show(key, value),
                differs ? h("span", { class: "visually-hidden" }, " (differs)") : null);
            }));
        });
        fill(presets, table("Presets", ["Key", "Current", ...PRESETS.map((p) => p.name)], rows));
        fill(effective, h("div", { class: "config-sections" }, Object.entries(config).map(([name, value]) => section(name, value))));
      } catch (error) {
        fill(effective, h("p", { class: "error-text", role: "alert" }, error.message));
      }
    }
    load();
  },
};
