// Drives the worklist page in Debian's Chromium: sign in (dev token), open a big ward (time to
// its first tasks, printed, never asserted; "Show more"), then the test's ward: complete a task.
// Usage: node worklist.spec.mjs <base-url> <ward> <task-key> <screenshot-path> <big-ward>
import { launch } from "./browser.mjs";

const [baseUrl, ward, taskKey, screenshot, bigWard] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1024, height: 768 } });
  await page.goto(`${baseUrl}/ui/worklist`);
  await page.fill("#wards", `${bigWard} ${ward}`);
  await page.press("#wards", "Enter");  // signs in, then shows the first ward: the big one
  const cards = page.locator("article[data-key]");
  await cards.first().waitFor({ timeout: 15000 });
  // Signed in (the token is kept for the tab): a reload is what a nurse opening the page sees.
  const started = Date.now();
  await page.reload();
  await cards.first().waitFor({ timeout: 15000 });
  const firstRender = Date.now() - started;
  const paint = await page.evaluate(() => performance.getEntriesByName("first-contentful-paint")[0]?.startTime);
  const firstPage = await cards.count();
  const shown = await page.locator("#shown").textContent();
  await page.click("#more");
  await cards.nth(firstPage).waitFor({ timeout: 15000 });  // (no waitForFunction: the CSP forbids eval)
  const afterMore = await cards.count();

  await page.selectOption("#ward", ward);
  const card = page.locator(`article[data-key="${taskKey}"]`);
  await card.waitFor({ timeout: 10000 });
  if (!(await card.getAttribute("class")).includes("overdue")) throw new Error("task not marked overdue");
  await page.screenshot({ path: screenshot, fullPage: true });
  await card.locator("button.complete").focus();
  await page.keyboard.press("Enter");
  await page.waitForSelector("#message:has-text('Done:')", { timeout: 10000 });
  await card.waitFor({ state: "detached", timeout: 10000 });
  console.log(JSON.stringify({ completed: taskKey, firstRender, paint, firstPage, afterMore, shown }));
} finally {
  await browser.close();
}
