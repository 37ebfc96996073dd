// The web UI end to end in headless Chromium (playwright-core from tools/ui-test).
// Launched by test_browser.py with the settings in the environment; prints one JSON
// object with what it measured and exits 1 on the first failed step or any console
// error. Every page gets a screenshot in $ARTIFACTS.
"use strict";
const { createRequire } = require("node:module");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const env = process.env;
const { chromium } = createRequire(path.join(env.UI_TOOLS, "package.json"))("playwright-core");
const BASE = env.BASE_URL;
const ARTIFACTS = env.ARTIFACTS;
const STEP_MS = 15000;
// URLs refused on purpose right now (a wrong login, the probe after logout).
let expected401 = [];

const report = { steps: [], console_errors: [], screenshots: [] };
function step(name) {
  report.steps.push({ name, at_ms: Date.now() - started });
}
const started = Date.now();

async function shot(page, name) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  report.screenshots.push(file);
}

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "altmount-ui-profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--no-first-run", "--disable-sync"],
    viewport: { width: 1280, height: 900 },
  });
  let curl = null;
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(STEP_MS);
    page.on("console", (msg) => {
      if (msg.type() !== "error") return;
      const where = msg.location().url || "";
      if (msg.text().startsWith("Failed to load resource") && expected401.some((u) => where.endsWith(u))) return;
      report.console_errors.push(`${msg.text()} (${where})`);
    });
    page.on("pageerror", (error) => report.console_errors.push(String(error)));
    page.on("dialog", (dialog) => dialog.accept());
    let uiBytes = 0;
    page.on("response", (response) => {
      if (new URL(response.url()).pathname.startsWith("/ui/") && !response.url().includes("/ui/api/")) {
        uiBytes += Number(response.headers()["content-length"] || 0);
      }
    });

    // Login: the root redirects a browser to the UI, which asks for credentials.
    await page.goto(BASE + "/");
    if (!page.url().endsWith("/ui/")) throw new Error(`/ did not redirect to /ui/: ${page.url()}`);
    await page.getByLabel("User").waitFor();
    await shot(page, "login");
    expected401 = ["/ui/api/login"];
    await page.getByLabel("User").fill("wrong");
    await page.getByLabel("Password").fill("nope");
    await page.getByRole("button", { name: "Log in" }).click();
    await page.locator("#login-error", { hasText: "wrong user or password" }).waitFor();
    expected401 = [];
    await page.getByLabel("User").fill(env.UI_USER);
    await page.getByLabel("Password").fill(env.UI_PASSWORD);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("heading", { name: "Dashboard", exact: true }).waitFor();
    step("logged in");
    const cookies = await context.cookies();
    const cookie = cookies.find((c) => c.name === "altmount_session");
    report.cookie = cookie && { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite };
    report.dashboard_transfer_bytes = uiBytes;

    // Queue: upload the NZB with the file picker and watch it complete.
    await page.getByRole("link", { name: "Queue" }).click();
    await page.getByRole("heading", { name: "Queue", exact: true }).waitFor();
    await page.getByLabel("Priority").selectOption("high");
    await page.locator("#q-file").setInputFiles(env.NZB);
    const row = page.locator("#q-list tr", { hasText: path.basename(env.NZB) });
    await row.locator(".badge-completed").waitFor({ timeout: 30000 });
    step("import completed");
    await shot(page, "queue");

    // Files: browse to the release, open the file, read its stream URL.
    await row.getByRole("link", { name: /^Files in / }).click();
    await page.getByRole("button", { name: env.MEDIA_NAME }).click();
    const urlField = page.locator("#f-url");
    await urlField.waitFor();
    const streamUrl = await urlField.inputValue();
    report.stream_url = streamUrl;
    await page.locator("#f-check").click();
    await page.locator("#f-details .badge-healthy").waitFor();
    await shot(page, "files");
    step("file details");

    // A client streams it (throttled so the stream stays open); the dashboard shows it.
    const target = new URL(streamUrl);
    target.username = env.UI_USER;
    target.password = env.UI_PASSWORD;
    curl = spawn("curl", ["-sS", "--limit-rate", "1M", "-o", "/dev/null", target.toString()], { stdio: "ignore" });
    await page.getByRole("link", { name: "Dashboard" }).click();
    await page.locator("#streams td.path", { hasText: env.MEDIA_NAME }).waitFor();
    await page.waitForFunction(() => {
      const text = document.getElementById("throughput-now")?.textContent || "";
      return /[1-9]/.test(text) && !text.startsWith("0 B");
    });
    report.throughput_shown = await page.locator("#throughput-now").textContent();
    // The segment cache card: the stream's segments are RAM-tier misses; the disk tier is on.
    await page.waitForFunction(() =>
      /[1-9]/.test(document.querySelector('#cache tr[data-tier="ram"] td.misses')?.textContent || ""));
    report.cache_rows = await page.locator("#cache tbody tr").evaluateAll((rows) =>
      rows.map((r) => [r.dataset.tier, r.querySelector("td.size") ? r.querySelector("td.size").textContent : "off"]));
    await page.waitForFunction(() => document.querySelectorAll(".chart polyline").length > 0);
    await shot(page, "dashboard");
    step("stream visible");

    // The layout holds at 375 px: no sideways scrolling of the page itself.
    await page.setViewportSize({ width: 375, height: 812 });
    await page.waitForTimeout(2200); // one poll: the graph redraws at the new width
    report.narrow_overflow_px = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await shot(page, "dashboard-375");
    await page.setViewportSize({ width: 1280, height: 900 });
    curl.kill();
    curl = null;

    // Providers: run the provider test.
    await page.getByRole("link", { name: "Providers" }).click();
    await page.getByRole("button", { name: `Test ${env.PROVIDER}` }).click();
    const result = page.locator(".test-result", { hasText: "RTT" });
    await result.waitFor({ timeout: 20000 });
    report.provider_test = await result.textContent();
    await shot(page, "providers");
    step("provider tested");

    // Health and config pages render their data.
    await page.getByRole("link", { name: "Health" }).click();
    await page.locator("#h-overview .badge").first().waitFor();
    await page.locator("#h-files td.path", { hasText: env.MEDIA_NAME }).waitFor();
    // Repairs: off without an arrs section, said so, and the Repair button is disabled.
    await page.locator("#h-repairs", { hasText: "arrs.enabled: false" }).waitFor();
    const repairButton = page.getByRole("button", { name: new RegExp(`^Repair .*${env.MEDIA_NAME}`) });
    if (!(await repairButton.isDisabled())) throw new Error("Repair is offered without an arr");
    await shot(page, "health");
    await page.getByRole("link", { name: "Config" }).click();
    await page.locator("#c-presets th", { hasText: "High-Performance" }).waitFor();
    const shown = await page.locator("#c-effective").textContent();
    if (!shown.includes("********") || shown.includes(env.UI_PASSWORD) || shown.includes(env.PROVIDER_PASSWORD)) {
      throw new Error("the config page does not mask the passwords");
    }
    await shot(page, "config");
    step("health and config");

    // Keyboard: on a fresh load the first Tab reaches the skip link, and the menu works
    // with Tab and Enter alone.
    await page.reload();
    await page.getByRole("heading", { name: "Config", exact: true }).waitFor();
    const focused = () => page.evaluate(() => document.activeElement.textContent.trim());
    await page.keyboard.press("Tab");
    report.first_tab = await focused();
    for (let i = 0; i < 10 && (await focused()) !== "Providers"; i += 1) await page.keyboard.press("Tab");
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Providers", exact: true }).waitFor();
    step("keyboard navigation");

    // Delete the item from the queue.
    await page.getByRole("link", { name: "Queue" }).click();
    await row.getByRole("button", { name: /^Delete / }).click();
    await row.waitFor({ state: "detached" });
    step("item deleted");

    // Log out: the cookie stops working.
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByLabel("User").waitFor();
    expected401 = ["/api/queue/stats"];
    const after = await page.evaluate(async () => (await fetch("/api/queue/stats", { headers: { "X-Requested-With": "altmount-ui" } })).status);
    report.status_after_logout = after;
    step("logged out");
    await page.close();
  } finally {
    if (curl) curl.kill();
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(
  () => {
    report.ok = report.console_errors.length === 0;
    report.total_ms = Date.now() - started;
    console.log(JSON.stringify(report));
    process.exit(report.ok ? 0 : 1);
  },
  (error) => {
    report.ok = false;
    report.error = String(error && error.stack || error);
    console.log(JSON.stringify(report));
    process.exit(1);
  },
);
