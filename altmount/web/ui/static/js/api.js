// Every call the UI makes goes through here: the documented REST API under /api, the
// WebDAV tree (PROPFIND/DELETE) and the session routes under /ui/api. Requests carry
// the session cookie (same origin) and, when they change state, the CSRF token.

const SAFE = new Set(["GET", "HEAD", "OPTIONS", "PROPFIND"]);
let csrfToken = "";
let onLoggedOut = () => {};

/** An API answer that was not 2xx: `status`, `code` and a readable message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Called when a request answers 401 (the session ended). */
export function whenLoggedOut(callback) {
  onLoggedOut = callback;
}

async function errorOf(response) {
  let code = "http_" + response.status;
  let message = `${response.status} ${response.statusText}`;
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
      }
    } catch {
      if (text.trim()) message = text.trim();
    }
  } catch {
    // keep the status line
  }
  return new ApiError(response.status, code, message);
}

/** fetch() with the session headers; throws ApiError unless 2xx. */
export async function request(method, url, { body, headers = {}, json = true, allow = [] } = {}) {
  const all = { "X-Requested-With": "altmount-ui", ...headers };
  if (!SAFE.has(method) && csrfToken) all["X-CSRF-Token"] = csrfToken;
  let payload = body;
  if (body !== undefined && !(body instanceof FormData) && typeof body !== "string") {
    all["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(url, {
    method,
    headers: all,
    body: payload,
    credentials: "same-origin",
    cache: "no-store",
  });
  if (!response.ok && !allow.includes(response.status)) {
    const error = await errorOf(response);
    if (response.status === 401 && !url.startsWith("/ui/api/")) onLoggedOut();
    throw error;
  }
  if (!json) return response;
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

export const get = (url) => request("GET", url);
/** GET /api/health: its body also when the status is 503 (unhealthy). */
export const health = () => request("GET", "/api/health", { allow: [503] });
export const post = (url, body) => request("POST", url, { body });
export const del = (url) => request("DELETE", url);

/** The current session ({user, csrf_token, ...}) or null when not logged in. */
export async function session() {
  const answer = await request("GET", "/ui/api/session");
  csrfToken = answer.csrf_token;
  return answer.authenticated ? answer : null;
}

export async function login(user, password) {
  const answer = await request("POST", "/ui/api/login", { body: { user, password } });
  csrfToken = answer.csrf_token;
  return answer;
}

export async function logout() {
  await request("POST", "/ui/api/logout");
  csrfToken = "";
}

/** Upload one NZB file: POST /api/queue/upload (multipart). */
export function upload(file, category, priority) {
  const form = new FormData();
  form.append("file", file, file.name);
  if (category) form.append("category", category);
  if (priority) form.append("priority", priority);
  return request("POST", "/api/queue/upload", { body: form });
}

/** The WebDAV URL of a virtual path ("/complete/x.mkv" -> "/webdav/complete/x.mkv"). */
export function davUrl(path) {
  return "/webdav" + path.split("/").map(encodeURIComponent).join("/");
}

/** PROPFIND Depth 1 of a directory: [{path, name, dir, size, modified, type}]. */
export async function listDir(path) {
  const response = await request("PROPFIND", davUrl(path.endsWith("/") ? path : path + "/"), {
    headers: { Depth: "1", "Content-Type": "application/xml" },
    body: '<?xml version="1.0"?><propfind xmlns="DAV:"><allprop/></propfind>',
    json: false,
  });
  const xml = new DOMParser().parseFromString(await response.text(), "application/xml");
  const DAV = "DAV:";
  const entries = [];
  for (const node of xml.getElementsByTagNameNS(DAV, "response")) {
    const href = decodeURIComponent(node.getElementsByTagNameNS(DAV, "href")[0]?.textContent || "");
    const value = (name) => node.getElementsByTagNameNS(DAV, name)[0]?.textContent || "";
    const dir = node.getElementsByTagNameNS(DAV, "collection").length > 0;
    const full = href.replace(/^\/webdav/, "").replace(/\/$/, "") || "/";
    entries.push({
      path: full,
      name: full.split("/").pop() || "/",
      dir,
      size: Number(value("getcontentlength") || 0),
      modified: value("getlastmodified"),
      type: value("getcontenttype"),
    });
  }
  const self = (path.replace(/\/$/, "") || "/");
  return entries.filter((entry) => entry.path !== self);
}

/** DELETE a file or directory from the WebDAV tree (metadata only). */
export function deletePath(path) {
  return request("DELETE", davUrl(path), { json: false });
}
