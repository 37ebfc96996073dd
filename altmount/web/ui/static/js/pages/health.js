// Health: the overall status with each component's reason, and the file health records
// by status (GET /api/health/files) with a re-check button per file, and each file's
// repair through Sonarr/Radarr (its state, what was asked, a button to start one).
import * as api from "../api.js";
import { h, fill, badge, table, when, notify, keepFocus } from "../util.js";

const STATUSES = ["unchecked", "healthy", "degraded", "corrupted"];

// What streams found damaged in a file (holes served as zeros, CRC-served articles), one
// line each, and whether it is queued for repair; nothing for an undamaged file.
function damageLines(f) {
  if (!f.damage || !f.damage.length) return null;
  return h("div", { class: "damage small" },
    f.wants_repair ? h("strong", { class: "badge-degraded" }, "Wants repair") : null,
    h("ul", { "aria-label": `Damage found in ${f.path}` }, f.damage.map((line) => h("li", {}, line))));
}

export default {
  title: "Health",
  mount(root, { pollMs }) {
    const overview = h("div", { id: "h-overview" });
    const tabs = h("div", { class: "toolbar", role: "group", "aria-label": "Show files by status" });
    const files = h("div", { id: "h-files" });
    let filter = "";
    let canRepair = false;
    fill(root, h("h1", {}, "Health"),
      h("section", { class: "card", "aria-labelledby": "c-title" }, h("h2", { id: "c-title" }, "Components"), overview),
      h("section", { class: "card", "aria-labelledby": "f-title" }, h("h2", { id: "f-title" }, "Files"), tabs, files));

    async function recheck(record) {
      try {
        const result = await api.post(`/api/health/files/${record.id}/check`);
        notify(`${record.path}: ${result.status}`);
      } catch (error) {
        notify(error.message, "error");
      }
      refresh();
    }

    async function repair(record) {
      try {
        await api.post(`/api/health/${record.id}/repair`);
        notify(`${record.path}: repair started`);
      } catch (error) {
        notify(error.message, "error");
      }
      refresh();
    }

    function repairCell(f) {
      return h("td", { class: "small" },
        f.repair_state ? badge(f.repair_state) : null,
        f.repair_detail ? h("div", { class: "small" }, f.repair_detail) : null,
        f.repair_at ? h("div", { class: "muted" }, `${when(f.repair_at)}, attempt ${f.repair_attempts}`) : null);
    }

    async function refresh() {
      const [report, list] = await Promise.allSettled([
        api.health(),
        api.get(`/api/health/files?limit=200${filter ? `&status=${filter}` : ""}`),
      ]);
      if (report.status === "fulfilled") {
        const parts = Object.entries(report.value.components || {});
        const repairs = report.value.repairs;
        canRepair = Boolean(repairs && repairs.instances.length);
        fill(overview, h("p", {}, "Overall: ", badge(report.value.status)),
          repairs ? h("p", { id: "h-repairs" }, repairs.enabled
            ? `Repairs through ${repairs.instances.map((i) => `${i.kind} ${i.name}`).join(", ")}: ${repairs.running} running, ${repairs.requested} requested, ${repairs.not_found} not found, ${repairs.failed} failed.`
            : "Repairs through Sonarr/Radarr are off (arrs.enabled: false).") : null,
          table("Components", ["Component", "Status", "Reason"], parts.map(([name, part]) =>
            h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, badge(part.status)), h("td", {}, part.reason)))));
      }
      if (list.status === "rejected") {
        fill(files, h("p", { class: "error-text", role: "alert" }, list.reason.message));
        return;
      }
      const answer = list.value;
      keepFocus(() => {
        fill(tabs, ["", ...STATUSES].map((s) => h("button", {
          type: "button", class: filter === s ? "" : "secondary", "aria-pressed": String(filter === s), dataset: { focus: `tab-${s}` },
          onclick: () => { filter = s; refresh(); },
        }, `${s || "all"} (${s ? answer.summary[s] ?? 0 : Object.values(answer.summary).reduce((a, b) => a + b, 0)})`)));
        fill(files,
          answer.enabled ? null : h("p", { class: "muted" }, "Background checks are off (health.enabled: false); re-check files by hand."),
          table("File health", ["File", "Status", "Missing", "Checked", "Next check", "Repair", ""], answer.files.map((f) => h("tr", {},
            h("td", { class: "path" }, f.path, f.error ? h("div", { class: "error-text small" }, f.error) : null, damageLines(f)),
            h("td", {}, badge(f.status)),
            h("td", { class: "num" }, `${f.missing_count} of ${f.sampled} sampled (${f.segments} segments)`),
            h("td", { class: "small" }, when(f.checked_at)),
            h("td", { class: "small" }, when(f.next_check)),
            repairCell(f),
            h("td", {}, h("button", { type: "button", class: "secondary", dataset: { focus: `chk-${f.id}` }, "aria-label": `Re-check ${f.path}`, onclick: () => recheck(f) }, "Re-check"),
              h("button", { type: "button", class: "secondary", dataset: { focus: `rep-${f.id}` }, "aria-label": `Repair ${f.path}`, disabled: !canRepair, title: canRepair ? "Ask Sonarr/Radarr for a replacement" : "No Sonarr/Radarr instance is configured (arrs section)", onclick: () => repair(f) }, "Repair")))),
          { empty: "No file has a health record yet." }));
      });
    }
    refresh();
    const timer = setInterval(refresh, pollMs * 5);
    return () => clearInterval(timer);
  },
};
