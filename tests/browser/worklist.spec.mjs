// Drives the worklist page in Debian's Chromium: sign in (dev token), open a ward, complete a task.
// Usage: node worklist.spec.mjs <base-url> <ward> <task-key> <screenshot-path>
import { chromium } from "playwright-core";

const [baseUrl, ward, taskKey, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1024, height: 768 } });
  await page.goto(`${baseUrl}/ui/worklist`);
  await page.fill("#wards", ward);
  await page.press("#wards", "Enter");
  const card = page.locator(`article[data-key="${taskKey}"]`);
  await card.waitFor({ timeout: 10000 });
  if (!(await card.getAttribute("class")).includes("overdue")) throw new Error("task not marked overdue");
  await page.screenshot({ path: screenshot, fullPage: true });
  await card.locator("button.complete").focus();
  await page.keyboard.press("Enter");
  await page.waitForSelector("#message:has-text('Done:')", { timeout: 10000 });
  await card.waitFor({ state: "detached", timeout: 10000 });
  console.log("completed", taskKey);
} finally {
  await browser.close();
}
