// Launches the worklist from "the EHR" in Debian's Chromium: /launch -> authorize -> callback ->
// the ward's worklist, signed in by the session cookie alone; completes a task there.
// Usage: node launch.spec.mjs <launch-url> <task-key>
import { launch } from "./browser.mjs";

const [launchUrl, taskKey] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1024, height: 768 } });
  await page.goto(launchUrl);
  console.log("landed on", new URL(page.url()).pathname + new URL(page.url()).search);
  const card = page.locator(`article[data-key="${taskKey}"]`);
  await card.waitFor({ timeout: 10000 });
  await card.locator("button.complete").click();
  await page.waitForSelector("#message:has-text('Done:')", { timeout: 10000 });
  await card.waitFor({ state: "detached", timeout: 10000 });
  console.log("completed", taskKey);
} finally {
  await browser.close();
}
