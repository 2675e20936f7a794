// Real-browser test of the notifications: a task in JupyterLab (with a kernel) asks to run
// a command; the JupyterLab notification says so with Allow, Deny and Open; the
// Delegations sidebar's bell (header and tab badge) counts it; Allow lets the task go on
// (the server has no API route here: the kernel answers); the review's notification
// follows. Screenshots in the light and the dark theme.
//
//   node scripts/browser-notify.mjs SPEC.json
//
// SPEC: { "base": "http://127.0.0.1:PORT", "artifacts": DIR, "chromium": PATH,
//         "notebook": "notify.ipynb" }
// Prints a JSON summary on the last line; exits non-zero on the first failed expectation.
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { check, launch, openSidebar, runAll, setTheme, sidebarTasks } from './lib.mjs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
mkdirSync(spec.artifacts, { recursive: true });
const summary = { consoleErrors: [] };
const toast = text => page.locator('.Toastify__toast', { hasText: text });
const buttons = locator =>
  locator.locator('.jp-toast-buttonBar button').evaluateAll(b => b.map(e => e.textContent.trim()).filter(Boolean));

// The theme's stylesheet applied (not only the body's flag): the notebook's background.
async function themed(light) {
  await page.waitForFunction(
    l => {
      const bg = getComputedStyle(document.querySelector('.jp-Notebook')).backgroundColor;
      const sum = (bg.match(/\d+/g) || []).slice(0, 3).reduce((n, v) => n + Number(v), 0);
      return l ? sum > 600 : sum < 300;
    },
    light,
    { timeout: 20000 }
  );
}

const browser = await launch(spec);
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
try {
  page.on('pageerror', error => summary.consoleErrors.push(String(error)));
  await page.goto(`${spec.base}/lab/tree/${spec.notebook}?reset`);
  await page.locator('.jp-Notebook').first().waitFor({ timeout: 60000 });
  const dialog = page.locator('.jp-Dialog');
  if (await dialog.waitFor({ state: 'visible', timeout: 10000 }).then(() => true, () => false)) {
    await dialog.locator('button', { hasText: 'Select' }).click();
    await dialog.waitFor({ state: 'detached', timeout: 10000 });
  }
  await setTheme(page, 'JupyterLab Light');
  await themed(true);
  await openSidebar(page);
  await runAll(page);

  // The question: a notification with the command and its actions; the bell counts it.
  const asked = toast('asks to run bash');
  await asked.waitFor({ timeout: 120000 });
  summary.question = (await asked.locator('.jp-toast-message').textContent()).trim();
  summary.actions = await buttons(asked);
  const bell = page.locator('#jupyter-delegate-sidebar .jd-bell');
  await bell.waitFor({ timeout: 10000 });
  summary.bellWaiting = (await bell.textContent()).trim();
  summary.bellIcon = await bell.locator('svg').count();
  summary.badgeWaiting = await page
    .locator('.jp-SideBar [data-id="jupyter-delegate-sidebar"]')
    .getAttribute('data-needs-you');
  const tasks = await sidebarTasks(page);
  check(tasks.length === 1 && tasks[0].state === 'waiting', `sidebar: ${JSON.stringify(tasks)}`);
  summary.taskId = tasks[0].id;
  await page.screenshot({ path: join(spec.artifacts, 'notify-question-light.png') });
  await setTheme(page, 'JupyterLab Dark');
  await themed(false);
  await page.screenshot({ path: join(spec.artifacts, 'notify-question-dark.png') });

  // Allow: the task goes on to review, whose notification follows. The answer goes to the
  // server's API; where the server has no such route (404), the kernel answers.
  const answered = page.waitForResponse(r => /\/delegate\/api\/tasks\/[^/]+\/answer\b/.test(r.url()));
  await asked.getByRole('button', { name: 'Allow' }).click();
  summary.answerStatus = (await answered).status();
  const review = toast('is ready for review');
  await review.waitFor({ timeout: 120000 });
  await asked.waitFor({ state: 'detached', timeout: 20000 });
  summary.review = (await review.locator('.jp-toast-message').textContent()).trim();
  summary.reviewActions = await buttons(review);
  await page.waitForFunction(
    () => document.querySelector('#jupyter-delegate-sidebar .jd-sidebar-task')?.dataset.state === 'review',
    null,
    { timeout: 20000 }
  );
  summary.stateAfterAllow = (await sidebarTasks(page))[0].state;
  summary.bellReview = (await bell.textContent()).trim();
  await page.screenshot({ path: join(spec.artifacts, 'notify-review-dark.png') });
  await setTheme(page, 'JupyterLab Light');
  await themed(true);
  await page.screenshot({ path: join(spec.artifacts, 'notify-review-light.png') });
  check(summary.consoleErrors.length === 0, `errors in the page: ${summary.consoleErrors.join(' | ')}`);
  console.log(JSON.stringify(summary));
} catch (error) {
  await page.screenshot({ path: join(spec.artifacts, 'notify-failure.png') }).catch(() => undefined);
  console.log(JSON.stringify(summary));
  console.error(`browser test failed: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
