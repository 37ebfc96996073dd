// Queue: upload NZBs (drop or pick, with category and priority), filter and search the
// list, retry and delete items one by one or in bulk.
import * as api from "../api.js";
import { h, fill, badge, table, when, notify, keepFocus } from "../util.js";

const STATES = ["pending", "processing", "completed", "failed", "paused", "cancelled"];
const RETRYABLE = new Set(["failed", "cancelled", "paused"]);

function progressOf(item) {
  if (item.state === "completed") return h("progress", { max: 1, value: 1, "aria-label": "done" });
  if (item.state === "processing") return h("progress", { "aria-label": "importing" });
  if (item.state === "pending") return h("progress", { max: 1, value: 0, "aria-label": "waiting" });
  return h("span", { class: "muted" }, "–");
}

export default {
  title: "Queue",
  mount(root, { pollMs }) {
    const selected = new Set();
    let items = [];
    let lastJson = "";
    const state = h("select", { id: "q-state" }, h("option", { value: "" }, "All states"),
      STATES.map((s) => h("option", { value: s }, s)));
    const search = h("input", { id: "q-search", type: "search", placeholder: "Name contains…" });
    const category = h("select", { id: "q-category" }, h("option", { value: "" }, "Default"));
    const priority = h("select", { id: "q-priority" },
      ["normal", "low", "high", "force"].map((p) => h("option", { value: p }, p)));
    const picker = h("input", { id: "q-file", type: "file", accept: ".nzb,application/x-nzb", multiple: true, class: "visually-hidden" });
    const drop = h("label", { for: "q-file", class: "drop", id: "q-drop", tabindex: -1 },
      h("strong", {}, "Drop NZB files here"), h("span", {}, " or click to choose files"));
    const list = h("div", { id: "q-list" });
    const summary = h("p", { class: "muted", id: "q-summary", role: "status" });
    const bulk = h("div", { class: "toolbar", role: "group", "aria-label": "Selected items" },
      h("button", { type: "button", id: "q-retry-selected", class: "secondary", onclick: () => each("retry") }, "Retry selected"),
      h("button", { type: "button", id: "q-delete-selected", class: "danger", onclick: () => each("delete") }, "Delete selected"),
      h("button", { type: "button", id: "q-clear", class: "secondary", onclick: clearFinished }, "Clear completed and failed"));

    fill(root,
      h("h1", {}, "Queue"),
      h("section", { class: "card", "aria-labelledby": "u-title" },
        h("h2", { id: "u-title" }, "Add NZB files"),
        h("div", { class: "row" },
          h("div", {}, h("label", { for: "q-category" }, "Category"), category),
          h("div", {}, h("label", { for: "q-priority" }, "Priority"), priority)),
        picker, drop,
        h("button", { type: "button", class: "secondary", onclick: () => picker.click() }, "Choose NZB files…")),
      h("section", { class: "card", "aria-labelledby": "l-title" },
        h("h2", { id: "l-title" }, "Items"),
        h("div", { class: "row" },
          h("div", {}, h("label", { for: "q-state" }, "State"), state),
          h("div", { class: "grow" }, h("label", { for: "q-search" }, "Search"), search)),
        bulk, summary, list));

    api.get("/api/config").then((cfg) => {
      const names = ((cfg.sabnzbd || {}).categories || []).map((c) => c.name);
      fill(category, names.length ? names.map((n) => h("option", { value: n }, n)) : h("option", { value: "" }, "Default"));
    }).catch(() => {});

    async function uploadAll(files) {
      for (const file of files) {
        try {
          const item = await api.upload(file, category.value, priority.value);
          notify(`Queued ${item.nzb_name} (#${item.id})`);
        } catch (error) {
          notify(`${file.name}: ${error.message}`, "error");
        }
      }
      picker.value = "";
      refresh();
    }
    picker.addEventListener("change", () => uploadAll([...picker.files]));
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      uploadAll([...event.dataTransfer.files]);
    });

    async function act(kind, item) {
      try {
        if (kind === "retry") await api.post(`/api/queue/${item.id}/retry`);
        else await api.del(`/api/queue/${item.id}`);
        selected.delete(item.id);
        notify(`${kind === "retry" ? "Retrying" : "Deleted"} ${item.nzb_name}`);
      } catch (error) {
        notify(`${item.nzb_name}: ${error.message}`, "error");
      }
    }

    async function each(kind) {
      const chosen = items.filter((i) => selected.has(i.id));
      if (!chosen.length) return notify("Select items first.");
      if (kind === "delete" && !confirm(`Delete ${chosen.length} item(s)?`)) return;
      for (const item of chosen) await act(kind, item);
      refresh();
    }

    async function clearFinished() {
      try {
        const answer = await api.del("/api/queue?state=completed,failed");
        notify(`Removed ${(answer.deleted || []).length} finished item(s)`);
      } catch (error) {
        notify(error.message, "error");
      }
      refresh();
    }

    function row(item) {
      const box = h("input", { type: "checkbox", "aria-label": `Select ${item.nzb_name}`, checked: selected.has(item.id), dataset: { focus: `sel-${item.id}` } });
      box.addEventListener("change", () => (box.checked ? selected.add(item.id) : selected.delete(item.id)));
      return h("tr", { dataset: { id: item.id } },
        h("td", {}, box),
        h("td", { class: "path" }, item.nzb_name, h("div", { class: "muted small" }, `#${item.id} · ${item.category} · ${item.priority}`),
          item.target_path ? h("a", { class: "small", href: "#/files" + encodeURI(item.target_path) }, `Files in ${item.target_path}`) : null),
        h("td", {}, badge(item.state)),
        h("td", {}, progressOf(item)),
        h("td", { class: "error-text" }, item.error || ""),
        h("td", { class: "small" }, when(item.updated_at)),
        h("td", { class: "actions" },
          RETRYABLE.has(item.state) && h("button", { type: "button", class: "secondary", dataset: { focus: `retry-${item.id}` }, onclick: async () => { await act("retry", item); refresh(); } }, "Retry"),
          h("button", { type: "button", class: "danger", "aria-label": `Delete ${item.nzb_name}`, dataset: { focus: `del-${item.id}` }, onclick: async () => { await act("delete", item); refresh(); } }, "Delete")));
    }

    async function refresh() {
      const query = new URLSearchParams({ limit: "200", sort: "created_at", order: "desc" });
      if (state.value) query.set("state", state.value);
      if (search.value.trim()) query.set("search", search.value.trim());
      try {
        const answer = await api.get(`/api/queue?${query}`);
        const json = JSON.stringify(answer);
        if (json === lastJson) return;
        lastJson = json;
        items = answer.items;
        const s = answer.summary;
        summary.textContent = `${answer.total} shown of ${s.total}: ${s.pending} pending, ${s.processing} processing, ${s.completed} completed, ${s.failed} failed`;
        const all = h("input", { type: "checkbox", "aria-label": "Select all shown", dataset: { focus: "sel-all" } });
        all.checked = items.length > 0 && items.every((i) => selected.has(i.id));
        all.addEventListener("change", () => {
          for (const i of items) (all.checked ? selected.add(i.id) : selected.delete(i.id));
          lastJson = "";
          refresh();
        });
        keepFocus(() => fill(list, table("Queue items", [all, "Name", "State", "Progress", "Error", "Updated", "Actions"],
          items.map(row), { empty: "The queue is empty." })));
      } catch (error) {
        summary.textContent = `Could not read the queue: ${error.message}`;
      }
    }

    let typing = null;
    search.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => { lastJson = ""; refresh(); }, 250); });
    state.addEventListener("change", () => { lastJson = ""; refresh(); });
    refresh();
    const timer = setInterval(refresh, pollMs);
    return () => clearInterval(timer);
  },
};
