// Files: browse the WebDAV tree (PROPFIND), a file's details and health (from
// /api/health/files), copy its stream URL, re-check or delete it.
import * as api from "../api.js";
import { h, fill, bytes, badge, table, facts, when, notify } from "../util.js";

function currentPath() {
  const rest = decodeURIComponent(location.hash.replace(/^#\/files/, "")) || "/";
  return rest.startsWith("/") ? rest : "/" + rest;
}

function crumbs(path) {
  const parts = path.split("/").filter(Boolean);
  const links = [h("a", { href: "#/files/" }, "root")];
  parts.forEach((part, i) => {
    const target = "/" + parts.slice(0, i + 1).join("/");
    links.push(" / ", h("a", { href: "#/files" + encodeURI(target) }, part));
  });
  return h("nav", { class: "crumbs", "aria-label": "Folder path" }, links);
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // no clipboard API (plain http from another host): select it in a field and copy
    const field = h("textarea", { class: "visually-hidden", readonly: true }, text);
    document.body.append(field);
    field.select();
    document.execCommand("copy");
    field.remove();
  }
}

export default {
  title: "Files",
  mount(root) {
    const path = currentPath();
    const listing = h("div", { id: "f-list" }, h("p", { class: "muted" }, "Loading…"));
    const details = h("section", { class: "card", id: "f-details", "aria-labelledby": "d-title", hidden: true });
    fill(root, h("h1", {}, "Files"), crumbs(path),
      h("section", { class: "card", "aria-label": "Folder contents" }, listing), details);
    let alive = true;

    async function showDetails(entry) {
      const url = location.origin + api.davUrl(entry.path);
      let record = null;
      try {
        const answer = await api.get("/api/health/files?limit=500");
        record = answer.files.find((f) => f.path === entry.path) || null;
      } catch (error) {
        notify(`Health records: ${error.message}`, "error");
      }
      if (!alive) return;
      const urlField = h("input", { id: "f-url", value: url, readonly: true, class: "grow" });
      const health = record
        ? [["Health", badge(record.status)], ["Segments", String(record.segments)],
            ["Sampled", String(record.sampled)], ["Missing articles", String(record.missing_count)],
            ["Checked", when(record.checked_at)], ["Next check", when(record.next_check)]]
        : [["Health", h("span", { class: "muted" }, "not checked yet")]];
      details.hidden = false;
      fill(details,
        h("h2", { id: "d-title" }, entry.name),
        facts([["Path", entry.path], ["Size", `${bytes(entry.size)} (${entry.size.toLocaleString()} bytes)`],
          ["Type", entry.type || "–"], ["Modified", entry.modified || "–"], ...health]),
        record && record.missing.length
          ? h("details", {}, h("summary", {}, `${record.missing.length} missing message-id(s)`),
            h("ul", { class: "plain small" }, record.missing.map((m) => h("li", {}, m))))
          : null,
        record && record.error ? h("p", { class: "error-text" }, record.error) : null,
        h("label", { for: "f-url" }, "Stream URL (WebDAV, needs the WebDAV user and password)"),
        h("div", { class: "row" }, urlField,
          h("button", { type: "button", id: "f-copy", onclick: async () => { await copyText(url); notify("Stream URL copied"); } }, "Copy")),
        h("div", { class: "toolbar" },
          h("button", { type: "button", class: "secondary", id: "f-check", onclick: async () => {
            try {
              const result = await api.post(`/api/health/files/${encodeURIComponent(entry.path)}/check`);
              notify(`${entry.name}: ${result.status}`);
              showDetails(entry);
            } catch (error) {
              notify(error.message, "error");
            }
          } }, "Re-check health"),
          h("button", { type: "button", class: "danger", id: "f-delete", onclick: async () => {
            if (!confirm(`Delete ${entry.path}? Only metadata is removed.`)) return;
            try {
              await api.deletePath(entry.path);
              notify(`Deleted ${entry.path}`);
              details.hidden = true;
              load();
            } catch (error) {
              notify(error.message, "error");
            }
          } }, "Delete")));
      details.querySelector("h2").focus?.();
    }

    async function load() {
      try {
        const entries = await api.listDir(path);
        if (!alive) return;
        entries.sort((a, b) => (a.dir === b.dir ? a.name.localeCompare(b.name) : a.dir ? -1 : 1));
        const rows = entries.map((entry) => h("tr", {},
          h("td", { class: "path" }, entry.dir
            ? h("a", { href: "#/files" + encodeURI(entry.path) }, `${entry.name}/`)
            : h("button", { type: "button", class: "link", onclick: () => showDetails(entry) }, entry.name)),
          h("td", { class: "num" }, entry.dir ? "–" : bytes(entry.size)),
          h("td", { class: "small" }, entry.modified)));
        fill(listing, table(`Contents of ${path}`, ["Name", "Size", "Modified"], rows, { empty: "This folder is empty." }));
      } catch (error) {
        fill(listing, h("p", { class: "error-text", role: "alert" }, `Could not list ${path}: ${error.message}`));
      }
    }

    load();
    return () => { alive = false; };
  },
};
