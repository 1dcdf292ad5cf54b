// Drives the audit dashboard in Debian's Chromium: sign in as quality, check the charts, drill down.
// Usage: node audit.spec.mjs <base-url> <screenshot-path>
import { chromium } from "playwright-core";

const [baseUrl, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await page.goto(`${baseUrl}/ui/audit`);
  await page.fill("#user", "quality.demo");
  await page.press("#user", "Enter");
  await page.locator("#chart-elements rect.bar").first().waitFor({ timeout: 10000 });
  const bars = await page.locator("#chart-elements rect.bar").count();
  const points = await page.locator("#chart-trend circle.point").count();
  const dots = await page.locator("#chart-scatter circle.dot").count();
  const rows = await page.locator("#completeness tbody tr").count();
  const box = await page.locator("#chart-elements").boundingBox();
  if (!bars || !points || !dots || !rows || !box || box.width < 100) {
    throw new Error(`charts missing: bars=${bars} points=${points} dots=${dots} rows=${rows}`);
  }
  const first = page.locator("a.drill").first();
  if (!(await first.textContent()).startsWith("anon-")) throw new Error("patient id not pseudonymised");
  await page.screenshot({ path: screenshot, fullPage: true });
  await first.click();
  await page.locator("#timeline tbody tr").first().waitFor({ timeout: 10000 });
  console.log(JSON.stringify({ bars, points, dots, rows }));
} finally {
  await browser.close();
}
