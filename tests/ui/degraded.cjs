// The health page of a degraded file in headless Chromium (playwright-core from tools/ui-test).
// Launched by test_degraded_health.py after a stream zero-filled a missing article; logs in,
// opens Health and prints one JSON object with the damage lines shown for $MEDIA_NAME.
"use strict";
const { createRequire } = require("node:module");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const env = process.env;
const { chromium } = createRequire(path.join(env.UI_TOOLS, "package.json"))("playwright-core");
const report = { console_errors: [], screenshots: [] };

async function main() {
  fs.mkdirSync(env.ARTIFACTS, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "altmount-ui-profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--no-first-run", "--disable-sync"],
    viewport: { width: 1280, height: 900 },
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(15000);
    page.on("console", (msg) => { if (msg.type() === "error") report.console_errors.push(msg.text()); });
    page.on("pageerror", (error) => report.console_errors.push(String(error)));
    await page.goto(env.BASE_URL + "/ui/");
    await page.getByLabel("User").fill(env.UI_USER);
    await page.getByLabel("Password").fill(env.UI_PASSWORD);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("heading", { name: "Dashboard", exact: true }).waitFor();
    await page.getByRole("link", { name: "Health" }).click();
    const row = page.locator("#h-files tr", { hasText: env.MEDIA_NAME });
    await row.locator(".damage li").first().waitFor();
    report.status = (await row.locator(".badge").first().textContent()).trim();
    report.damage = await row.getByRole("list", { name: /Damage found in/ }).locator("li").allTextContents();
    report.wants_repair = await row.getByText("Wants repair").isVisible();
    const file = path.join(env.ARTIFACTS, "health-degraded.png");
    await page.screenshot({ path: file, fullPage: true });
    report.screenshots.push(file);
    report.ok = report.console_errors.length === 0;
  } catch (error) {
    report.ok = false;
    report.error = String(error && error.stack || error);
  } finally {
    await context.close();
  }
  console.log(JSON.stringify(report));
  process.exit(report.ok ? 0 : 1);
}

main();
