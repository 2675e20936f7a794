// Real-browser test of the permission card: a task in JupyterLab (with a kernel) asks to
// run a command; the card shows the command and the rule "Allow this prefix for the task"
// adds; Cancel asks first, and "Keep it running" keeps the task; a click on the prefix
// button lets a later command with the same prefix run unasked; a different command asks
// again and is denied with a reason; the log says so, and folds when the review opens.
// Screenshots of the card in the light and the dark theme.
//
//   node scripts/browser-permission.mjs SPEC.json
//
// SPEC: { "base": "http://127.0.0.1:PORT", "artifacts": DIR, "chromium": PATH,
//         "notebook": "permission.ipynb" }
// Prints a JSON summary on the last line; exits non-zero on the first failed expectation.
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { check, launch, runAll, setTheme } from './lib.mjs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
mkdirSync(spec.artifacts, { recursive: true });
const summary = { consoleErrors: [] };
const view = '.jp-Notebook .jupyter-widgets';
const card = `${view} .jd-ask`;

const browser = await launch(spec);
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
try {
  page.on('pageerror', error => summary.consoleErrors.push(String(error)));
  await page.goto(`${spec.base}/lab/tree/${spec.notebook}?reset`);
  await page.locator('.jp-Notebook').first().waitFor({ timeout: 60000 });
  // JupyterLab may ask which kernel to start: the notebook's own (Python 3).
  const dialog = page.locator('.jp-Dialog');
  if (await dialog.waitFor({ state: 'visible', timeout: 10000 }).then(() => true, () => false)) {
    await dialog.locator('button', { hasText: 'Select' }).click();
    await dialog.waitFor({ state: 'detached', timeout: 10000 });
  }
  await setTheme(page, 'JupyterLab Light');
  await runAll(page);

  // The first question: the command as a command, and the rule the prefix button adds.
  const command = page.locator(`${card} pre.jd-command`);
  await command.filter({ hasText: '$ ls -la shop' }).waitFor({ timeout: 120000 });
  summary.firstCard = (await page.locator(card).textContent()).trim();
  check(summary.firstCard.includes('bash(ls:*)'), `the card names no rule: ${summary.firstCard}`);
  check(!summary.firstCard.includes('"command"'), 'the card shows the input as JSON');
  const cardBox = page.locator(card).locator('xpath=../../..'); // the card with its buttons
  await cardBox.scrollIntoViewIfNeeded();
  await cardBox.screenshot({ path: join(spec.artifacts, 'permission-card-light.png') });
  await setTheme(page, 'JupyterLab Dark');
  await cardBox.screenshot({ path: join(spec.artifacts, 'permission-card-dark.png') });

  // Cancel asks first (its question is made when first asked); "Keep it running" keeps it.
  const notebook = page.locator('.jp-Notebook');
  await notebook.getByRole('button', { name: 'Cancel…' }).click();
  const keep = notebook.getByRole('button', { name: 'Keep it running' });
  await keep.waitFor({ timeout: 20000 });
  summary.cancelQuestion = (await keep.locator('xpath=..').textContent()).trim();
  check(summary.cancelQuestion.includes('The agent stops for good'), summary.cancelQuestion);
  await keep.click();
  await keep.waitFor({ state: 'hidden', timeout: 20000 });
  await notebook.getByRole('button', { name: 'Cancel…' }).waitFor({ timeout: 20000 });

  // The card's own buttons (a notification toast offers Allow and Deny too, outside it).
  await notebook.getByRole('button', { name: 'Allow this prefix for the task' }).click();

  // The same prefix runs unasked; a different command asks: the second card.
  await command.filter({ hasText: '$ wc -l shop/cart.py' }).waitFor({ timeout: 120000 });
  const calls = await page.$$eval(`${view} details.jd-tool summary`, s =>
    s.map(e => e.textContent.trim())
  );
  summary.callsBeforeSecondCard = calls;
  check(
    calls.some(c => c.startsWith('bash ls shop/cart.py') && c.includes('ok')),
    `the same-prefix command did not run: ${JSON.stringify(calls)}`
  );
  const notes = await page.$$eval(`${view} .jd-note`, n => n.map(e => e.textContent));
  summary.notes = notes.filter(n => n.includes('you '));
  check(
    summary.notes.some(n => n.includes('you allowed bash ls -la shop, and bash(ls:*) for the rest')),
    `the log does not say what was allowed: ${JSON.stringify(summary.notes)}`
  );
  check(
    !summary.notes.some(n => n.includes('ls shop/cart.py')),
    'the same-prefix command was asked'
  );
  await cardBox.screenshot({ path: join(spec.artifacts, 'permission-card-second-dark.png') });

  // Deny with a reason the agent receives.
  await page.locator(`${view} input[placeholder^="why"]`).fill('count lines with the read tool');
  await notebook.getByRole('button', { name: 'Deny' }).click();

  // The review opens: the log folds to one line, and unfolds on a click.
  const toggle = notebook.getByRole('button', { name: 'show the agent log' });
  await toggle.waitFor({ timeout: 120000 });
  summary.folded = (await page.locator(`${view} .jd-log-summary`).textContent()).trim();
  await page.locator(`${view} .jd-log-summary`).scrollIntoViewIfNeeded();
  await setTheme(page, 'JupyterLab Dark');
  await page.screenshot({ path: join(spec.artifacts, 'permission-review-folded-dark.png') });
  await toggle.click();
  await page
    .locator(`${view} .jd-note`, { hasText: 'you denied bash wc -l shop/cart.py' })
    .waitFor({ timeout: 20000 });
  const denied = await page
    .locator(`${view} .jd-note`, { hasText: 'you denied' })
    .first()
    .textContent();
  summary.denied = denied.trim();
  check(denied.includes('the agent is told: count lines with the read tool'), denied);
  const logText = await page.locator(view).first().textContent();
  check(!logText.includes('denyed'), 'the log says "denyed"');
  const deniedNote = page.locator(`${view} .jd-note`, { hasText: 'you denied' }).first();
  await deniedNote.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(spec.artifacts, 'permission-log-dark.png') });
  summary.noteColour = await deniedNote.evaluate(n => getComputedStyle(n).color);
  await setTheme(page, 'JupyterLab Light');
  await deniedNote.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(spec.artifacts, 'permission-log-light.png') });
  check(summary.consoleErrors.length === 0, `errors in the page: ${summary.consoleErrors.join(' | ')}`);
  console.log(JSON.stringify(summary));
} catch (error) {
  await page.screenshot({ path: join(spec.artifacts, 'permission-failure.png') }).catch(() => undefined);
  console.log(JSON.stringify(summary));
  console.error(`browser test failed: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
