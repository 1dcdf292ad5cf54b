// The worklist page on a ward of thousands of open tasks: how long until the first tasks show,
// and "Show more" reaching the next page. Prints timings (measured, never asserted) as JSON.
// Usage: node worklist_render.spec.mjs <base-url> <ward>
import { chromium } from "playwright-core";

const [baseUrl, ward] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1024, height: 768 } });
  await page.goto(`${baseUrl}/ui/worklist`);
  await page.fill("#wards", ward);
  await page.press("#wards", "Enter");  // sign in: the page then loads the ward
  await page.locator("article[data-key]").first().waitFor({ timeout: 15000 });
  // Signed in (token kept for the tab): a fresh load is what a nurse opening the page sees.
  const started = Date.now();
  await page.reload();
  await page.locator("article[data-key]").first().waitFor({ timeout: 15000 });
  const firstRender = Date.now() - started;
  const paint = await page.evaluate(() => performance.getEntriesByName("first-contentful-paint")[0]?.startTime);
  const firstPage = await page.locator("article[data-key]").count();
  const shown = await page.locator("#shown").textContent();
  await page.click("#more");
  // (no waitForFunction: the page's CSP forbids eval)
  await page.locator("article[data-key]").nth(firstPage).waitFor({ timeout: 15000 });
  const afterMore = await page.locator("article[data-key]").count();
  console.log(JSON.stringify({ firstRender, paint, firstPage, afterMore, shown }));
} finally {
  await browser.close();
}
