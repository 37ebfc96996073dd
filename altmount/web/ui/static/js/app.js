// The shell: session check, login form, hash routing between pages, and the throughput
// sampler that keeps the last 10 minutes while the UI is open (across page changes).
import * as api from "./api.js";
import { h, fill, notify } from "./util.js";
import dashboard from "./pages/dashboard.js";
import queue from "./pages/queue.js";
import files from "./pages/files.js";
import providers from "./pages/providers.js";
import health from "./pages/health.js";
import config from "./pages/config.js";

const PAGES = { dashboard, queue, files, providers, health, config };
const POLL_MS = 2000;
const WINDOW_SECONDS = 600;
const main = document.getElementById("main");
let unmount = null;
let loggedIn = false;

/** Throughput samples shared by the dashboard: [{t, v}] plus the latest streaming answer. */
export const sampler = {
  samples: JSON.parse(sessionStorage.getItem("altmount.samples") || "[]"),
  latest: null,
  listeners: new Set(),
  timer: null,
  previous: null,
  async tick() {
    try {
      const answer = await api.get("/api/health/streaming");
      const now = Date.now() / 1000;
      const served = answer.totals.bytes_served_total;
      let value = answer.totals.current_speed;
      if (this.previous && served >= this.previous.served && now > this.previous.t) {
        value = (served - this.previous.served) / (now - this.previous.t);
      }
      this.previous = { t: now, served };
      this.samples.push({ t: now, v: value });
      this.samples = this.samples.filter((s) => now - s.t <= WINDOW_SECONDS);
      sessionStorage.setItem("altmount.samples", JSON.stringify(this.samples));
      this.latest = answer;
      for (const listener of this.listeners) listener(answer);
    } catch (error) {
      if (error.status !== 401) for (const listener of this.listeners) listener(null, error);
    }
  },
  start() {
    if (this.timer === null) {
      this.tick();
      this.timer = setInterval(() => this.tick(), POLL_MS);
    }
  },
  stop() {
    clearInterval(this.timer);
    this.timer = null;
  },
};

function route() {
  const name = location.hash.replace(/^#\/?/, "").split("/")[0];
  return PAGES[name] ? name : "dashboard";
}

/** Show the page of the address; focus moves to it on navigation (not on first load,
 * so that the first Tab still reaches the skip link). */
function render(event) {
  if (!loggedIn) return;
  if (!location.hash.startsWith("#/")) {
    // the skip link (#main) or a bare URL: keep the page, fix the address
    history.replaceState(null, "", "#/" + route());
  }
  const name = route();
  if (unmount) unmount();
  unmount = null;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === "#/" + name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const page = PAGES[name];
  document.title = `${page.title} · altmount`;
  fill(main);
  unmount = page.mount(main, { sampler, windowSeconds: WINDOW_SECONDS, pollMs: POLL_MS }) || null;
  if (event) main.focus({ preventScroll: true });
}

function showLogin(message) {
  loggedIn = false;
  sampler.stop();
  if (unmount) unmount();
  unmount = null;
  document.getElementById("top").hidden = true;
  document.title = "Log in · altmount";
  const user = h("input", { id: "login-user", name: "user", autocomplete: "username", required: true });
  const password = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password" });
  const error = h("p", { class: "error", role: "alert", id: "login-error" }, message || "");
  const form = h(
    "form",
    { class: "card login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "altmount"),
    h("p", { class: "muted" }, "Log in with the WebDAV user and password."),
    h("label", { for: "login-user" }, "User"),
    user,
    h("label", { for: "login-password" }, "Password"),
    password,
    error,
    h("button", { type: "submit" }, "Log in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      const answer = await api.login(user.value, password.value);
      enter(answer);
    } catch (failure) {
      error.textContent = failure.message;
      password.select();
    }
  });
  fill(main, form);
  user.focus();
}

function enter(answer) {
  loggedIn = true;
  document.getElementById("top").hidden = false;
  document.getElementById("who").textContent = answer.user ? `Signed in as ${answer.user}` : "";
  document.getElementById("logout").hidden = !answer.auth_required;
  sampler.start();
  render(null);
}

async function start() {
  api.whenLoggedOut(() => {
    if (loggedIn) showLogin("Your session ended; log in again.");
  });
  document.getElementById("logout").addEventListener("click", async () => {
    try {
      await api.logout();
    } catch (error) {
      notify(error.message, "error");
    }
    sessionStorage.removeItem("altmount.samples");
    showLogin("You are logged out.");
  });
  document.getElementById("skip").addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  window.addEventListener("hashchange", render);
  const answer = await api.session();
  if (answer) enter(answer);
  else showLogin();
}

start().catch((error) => {
  fill(main, h("p", { class: "error", role: "alert" }, `altmount UI failed to start: ${error.message}`));
});
