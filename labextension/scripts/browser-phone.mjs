// Real-browser test of the phone page (/delegate/, served by the server extension): a
// notebook in JupyterLab starts a task in its kernel that asks to run a command; on a
// phone-sized page (390x844, touch) the question shows with its command and rule, Allow
// lets the task go on, its review shows (summary, checks, the diff readable at 390 px),
// and Approve merges it. Screenshots of the page in light and dark.
//
//   node scripts/browser-phone.mjs SPEC.json
//
// SPEC: { "base": "http://127.0.0.1:PORT", "artifacts": DIR, "chromium": PATH,
//         "notebook": "phone.ipynb" }
// Prints a JSON summary on the last line; exits non-zero on the first failed expectation.
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { check, launch, runAll } from './lib.mjs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
mkdirSync(spec.artifacts, { recursive: true });
const summary = { consoleErrors: [] };
const shot = name => join(spec.artifacts, `phone-${name}.png`);

const browser = await launch(spec);
const lab = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const phoneContext = await browser.newContext({
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  colorScheme: 'light'
});
const phone = await phoneContext.newPage();
try {
  phone.on('pageerror', error => summary.consoleErrors.push(String(error)));
  // The notebook runs the task in its kernel.
  await lab.goto(`${spec.base}/lab/tree/${spec.notebook}?reset`);
  await lab.locator('.jp-Notebook').first().waitFor({ timeout: 60000 });
  const dialog = lab.locator('.jp-Dialog');
  if (await dialog.waitFor({ state: 'visible', timeout: 10000 }).then(() => true, () => false)) {
    await dialog.locator('button', { hasText: 'Select' }).click();
    await dialog.waitFor({ state: 'detached', timeout: 10000 });
  }
  await runAll(lab);

  // The phone: the question, with its command and the rule that asked.
  await phone.goto(`${spec.base}/delegate/`);
  const waiting = phone.locator('.card.state-waiting');
  await waiting.locator('.question pre.command').waitFor({ timeout: 120000 });
  summary.question = (await waiting.textContent()).trim();
  check(summary.question.includes('$ wc -l shop/cart.py'), `no command: ${summary.question}`);
  check(summary.question.includes('bash asks permission'), summary.question);
  summary.status = (await phone.locator('#status').textContent()).trim();
  check(summary.status.startsWith('1 needs you'), `status: ${summary.status}`);
  const allow = waiting.getByRole('button', { name: 'Allow' });
  const box = await allow.boundingBox();
  summary.allowSize = [Math.round(box.width), Math.round(box.height)];
  check(box.height >= 44, `the Allow button is ${box.height}px high: too small to touch`);
  await phone.screenshot({ path: shot('question-light') });
  await phone.emulateMedia({ colorScheme: 'dark' });
  await phone.screenshot({ path: shot('question-dark') });
  summary.darkBackground = await phone.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await phone.emulateMedia({ colorScheme: 'light' });
  await allow.tap();

  // The task goes on, to review: summary, checks, the diff on a narrow screen.
  const review = phone.locator('.card.state-review');
  await review.waitFor({ timeout: 120000 });
  summary.review = (await review.textContent()).trim();
  check(summary.review.includes('Wrote NOTES.md'), `no summary: ${summary.review}`);
  check(summary.review.includes('PASS'), `no passing check: ${summary.review}`);
  check(!summary.review.includes('Allowed'), `a note of the question stays: ${summary.review}`);
  await review.locator('details.diff-box summary').tap();
  const diff = review.locator('pre.diff');
  await diff.locator('span.add').first().waitFor({ timeout: 20000 });
  summary.diff = (await diff.textContent()).slice(0, 400);
  check(summary.diff.includes('+The cart is short.'), `the diff: ${summary.diff}`);
  const long = diff.locator('span.add', { hasText: 'A line far wider than a phone' });
  summary.longLineHeight = (await long.boundingBox()).height;
  check(summary.longLineHeight > 40, 'the long line of the diff is not wrapped');
  const widths = await phone.evaluate(() => ({
    page: document.documentElement.scrollWidth,
    diff: document.querySelector('pre.diff').scrollWidth,
    diffBox: document.querySelector('pre.diff').clientWidth
  }));
  summary.widths = widths;
  check(widths.page <= 390, `the page scrolls sideways: ${widths.page}px wide`);
  check(widths.diff <= widths.diffBox, `the diff does not wrap: ${JSON.stringify(widths)}`);
  await phone.screenshot({ path: shot('review-light'), fullPage: true });
  await phone.emulateMedia({ colorScheme: 'dark' });
  await phone.screenshot({ path: shot('review-dark'), fullPage: true });

  // Approve: it merges, and leaves the tasks that need you.
  await review.getByRole('button', { name: 'Approve' }).tap();
  await phone.locator('.empty', { hasText: 'Nothing needs you.' }).waitFor({ timeout: 60000 });
  summary.others = (await phone.locator('.others').textContent()).trim();
  check(summary.others === 'Other tasks: 1 merged.', `after the approve: ${summary.others}`);
  const listed = await phone.evaluate(async () => (await fetch('api/tasks')).json());
  summary.after = listed.tasks.map(t => [t.name, t.state, t.decisions]);
  check(listed.tasks[0].state === 'merged', `not merged: ${JSON.stringify(summary.after)}`);
  await phone.screenshot({ path: shot('after-dark') });
  check(summary.consoleErrors.length === 0, `errors in the page: ${summary.consoleErrors.join(' | ')}`);
  console.log(JSON.stringify(summary));
} catch (error) {
  await phone.screenshot({ path: shot('failure') }).catch(() => undefined);
  await lab.screenshot({ path: shot('failure-lab') }).catch(() => undefined);
  console.log(JSON.stringify(summary));
  console.error(`browser test failed: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
