// Drives the audit dashboard in Debian's Chromium: sign in as quality, check the charts, drill down.
// Usage: node audit.spec.mjs <base-url> <screenshot-path>
import { launch } from "./browser.mjs";

const [baseUrl, screenshot] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await page.goto(`${baseUrl}/ui/audit`);
  await page.fill("#user", "quality.demo");
  await page.press("#user", "Enter");
  await page.locator("#chart-heat rect.bar").first().waitFor({ timeout: 10000 });
  const bars = await page.locator("#chart-heat rect.bar").count();
  const cells = await page.locator("#chart-heat rect.cell:not(.empty)").count();
  const points = await page.locator("#chart-p circle.point").count();
  const dots = await page.locator("#chart-stay circle.dot").count();
  const rows = await page.locator("#completeness tbody tr").count();
  const box = await page.locator("#chart-heat").boundingBox();
  if (!bars || !points || !dots || !rows || !box || box.width < 100) {
    throw new Error(`charts missing: bars=${bars} points=${points} dots=${dots} rows=${rows}`);
  }
  // Every wrapped name line fits left of the cells: none is clipped by the SVG's left edge.
  const clipped = await page.locator("#chart-heat text.label").evaluateAll((labels) =>
    labels.filter((t) => t.getBBox().x < 0).map((t) => t.textContent));
  // A chart's CSV link downloads with the user's token.
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#section-p-chart a.csv")]);
  const csvName = download.suggestedFilename();
  const first = page.locator("a.drill").first();
  if (!(await first.textContent()).startsWith("anon-")) throw new Error("patient id not pseudonymised");
  await page.screenshot({ path: screenshot, fullPage: true });
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-charts.png"), fullPage: true, clip: { x: 0, y: 0, width: 1200, height: 1900 } });
  for (const part of ["p-chart", "heat", "stay"]) {
    await page.locator(`#section-${part}`).screenshot({ path: screenshot.replace(/\.png$/, `-${part}.png`) });
  }
  await first.click();
  await page.locator("#timeline tbody tr").first().waitFor({ timeout: 10000 });
  console.log(JSON.stringify({ bars, cells, points, dots, rows, clipped, csvName }));
} finally {
  await browser.close();
}
