// Drives the patient view in Debian's Chromium: sign in on the worklist, tap the patient, read the timeline.
// Usage: node patient.spec.mjs <base-url> <ward> <task-key> <patient-id> <expected-json> <screenshot-path>
import { launch } from "./browser.mjs";

const [baseUrl, ward, taskKey, patientId, expectedJson, screenshot] = process.argv.slice(2);
const expected = JSON.parse(expectedJson);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1024, height: 768 } });
  const blocked = [];
  page.on("console", (message) => {
    if (/Content Security Policy|Refused to/.test(message.text())) blocked.push(message.text());
  });
  await page.goto(`${baseUrl}/ui/worklist`);
  await page.fill("#wards", ward);
  await page.press("#wards", "Enter");
  const card = page.locator(`article[data-key="${taskKey}"]`);
  await card.waitFor({ timeout: 10000 });
  await card.locator("a.patient").click();
  await page.waitForURL(`**/ui/patients/${patientId}`);
  const svg = page.locator("svg.timeline");
  await svg.waitFor({ timeout: 10000 });
  for (const [element, [status, label]] of Object.entries(expected)) {
    const lane = svg.locator(`g.lane[data-element="${element}"]`);
    const got = await lane.getAttribute("data-status");
    if (got !== status) throw new Error(`${element}: ${got}, expected ${status}`);
    const text = await lane.locator("text.status").textContent();
    if (text !== label) throw new Error(`${element}: label ${text}, expected ${label}`);
  }
  const details = page.locator('details[data-element="patient_education"]');
  await details.locator("summary").click();
  await details.locator(".decline:has-text('Patient refused')").waitFor({ state: "visible", timeout: 5000 });
  await details.locator("summary").click();
  if (blocked.length) throw new Error(`blocked by the CSP: ${blocked.join(" | ")}`);
  const lanes = await svg.locator("g.lane").count();
  const notApplicable = await page.locator("details.not-applicable li").count();
  const box = await svg.boundingBox();
  await page.locator(".at-a-glance").first().screenshot({ path: screenshot });
  await page.emulateMedia({ media: "print" });  // printed: the chart without the controls
  if (await page.locator("#print").isVisible()) throw new Error("print button printed");
  if (!(await svg.isVisible())) throw new Error("timeline not printed");
  console.log(JSON.stringify({ lanes, notApplicable, width: box.width }));
} finally {
  await browser.close();
}
