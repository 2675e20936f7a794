// Real-browser test of the extension: Debian's Chromium driven by playwright-core against a
// JupyterLab server that tests/test_labextension.py started.
//
//   node scripts/browser-test.mjs SPEC.json
//
// SPEC: { "base": "http://127.0.0.1:PORT", "artifacts": DIR, "chromium": PATH,
//         "records": "records.ipynb", "expected": { TASK_ID: STATE, ... },
//         "tutorial": "tutorial.ipynb", "live": "live.ipynb", "failing": TASK_ID }
// Phase 1 opens the saved notebook of task records with no kernel: the cards show each
// task's state (the failing check's card its last lines, screenshot in the light and the
// dark theme) and the Delegations sidebar lists the tasks. Phase 2 runs the tutorial with
// a kernel (Run All Cells) and follows the sidebar to `merged`. Phase 3 runs a slow task
// and opens one of its first tool calls in the live view while it runs: the call must stay
// open while later steps arrive (only the page of the log that changed is re-sent); its
// check fails, and the review shows the check's last lines (screenshots, dark and light).
// Prints a JSON summary on
// the last line; exits non-zero with the reason on the first failed expectation.
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { check, dismissKernelDialog, launch, openSidebar, runAll, setTheme, sidebarTasks } from './lib.mjs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
mkdirSync(spec.artifacts, { recursive: true });
const summary = { consoleErrors: [] };

const browser = await launch(spec);
const page = await browser.newPage({ viewport: { width: 1440, height: 960 } });
try {
  page.on('console', message => {
    if (message.type() === 'error' && /delegate/i.test(message.text())) {
      summary.consoleErrors.push(message.text());
    }
  });
  page.on('pageerror', error => summary.consoleErrors.push(String(error)));

  // -- phase 1: the saved records, no kernel ------------------------------------------
  await page.goto(`${spec.base}/lab/tree/${spec.records}`);
  await dismissKernelDialog(page);
  const ids = Object.keys(spec.expected);
  await page.waitForFunction(
    n => document.querySelectorAll('.jp-Notebook .jd-card').length >= n,
    ids.length,
    { timeout: 60000 }
  );
  const cards = await page.$$eval('.jp-Notebook .jd-card', els =>
    els.map(e => ({
      id: e.dataset.taskId,
      state: e.dataset.state,
      folded: e.classList.contains('jd-folded'),
      badge: e.querySelector('.jd-badge')?.textContent,
      pass: e.querySelectorAll('.jd-pass').length,
      fail: e.querySelectorAll('.jd-fail').length,
      tail: e.querySelector('.jd-check-tail')?.textContent ?? '',
      seeAll: e.querySelector('.jd-see-all')?.textContent ?? '',
      hint: e.querySelector('.jd-check-hint')?.textContent ?? '',
      markup: e.querySelectorAll('.jd-check-tail *').length,
      text: e.textContent
    }))
  );
  summary.cards = cards.map(({ text, ...rest }) => rest);
  for (const [id, state] of Object.entries(spec.expected)) {
    const card = cards.find(c => c.id === id);
    check(card, `no card for task ${id}; cards: ${JSON.stringify(summary.cards)}`);
    check(card.state === state && card.badge === state, `card ${id} shows ${card.badge}, not ${state}`);
    check(!card.folded, `card ${id} is folded though no live widget is beside it`);
    check(card.text.includes('$'), `card ${id} shows no cost`);
  }
  const kernel = await page
    .locator('.jp-NotebookPanel-toolbar .jp-KernelName, .jp-Toolbar-kernelName')
    .first()
    .textContent()
    .catch(() => '');
  summary.kernelLabel = (kernel || '').trim();

  await openSidebar(page);
  await page.waitForFunction(
    n => document.querySelectorAll('#jupyter-delegate-sidebar .jd-sidebar-task').length >= n,
    ids.length,
    { timeout: 20000 }
  );
  const listed = await sidebarTasks(page);
  summary.sidebar = listed.map(({ text, ...rest }) => rest);
  for (const [id, state] of Object.entries(spec.expected)) {
    const item = listed.find(t => t.id === id);
    check(item && item.state === state, `sidebar shows ${JSON.stringify(item)} for ${id} (${state})`);
  }
  summary.counts = await page.$eval('#jupyter-delegate-sidebar .jd-sidebar-counts', e => e.textContent);
  const running = Object.values(spec.expected).filter(s => ['queued', 'running', 'waiting'].includes(s)).length;
  const review = Object.values(spec.expected).filter(s => s === 'review').length;
  check(
    summary.counts.includes(`${running} running`) && summary.counts.includes(`${review} awaiting review`),
    `sidebar counts read "${summary.counts}"`
  );

  // A click on the last task scrolls its cell into view and makes it the active cell.
  const last = ids[ids.length - 1];
  await page.locator(`#jupyter-delegate-sidebar .jd-sidebar-task[data-task-id="${last}"]`).click();
  await page.waitForTimeout(800);
  const inView = await page.$eval(`.jp-Notebook .jd-card[data-task-id="${last}"]`, card => {
    const box = card.getBoundingClientRect();
    const cell = card.closest('.jp-Cell');
    return {
      visible: box.top < window.innerHeight && box.bottom > 0,
      active: !!cell && cell.classList.contains('jp-mod-active')
    };
  });
  summary.clickScrolls = inView;
  check(inView.visible && inView.active, `clicking ${last} did not bring its cell: ${JSON.stringify(inView)}`);
  await page.screenshot({ path: join(spec.artifacts, 'records-no-kernel.png') });

  // The failing check's card, in the light theme and the dark one.
  const failingCard = page.locator(`.jp-Notebook .jd-card[data-task-id="${spec.failing}"]`);
  summary.themes = [];
  for (const theme of ['JupyterLab Light', 'JupyterLab Dark', 'JupyterLab Light']) {
    await setTheme(page, theme);
    summary.themes.push(await page.evaluate(() => (document.body.dataset.jpThemeLight === 'true' ? 'light' : 'dark')));
    if (summary.themes.length < 3) {
      await failingCard.scrollIntoViewIfNeeded();
      await failingCard.screenshot({ path: join(spec.artifacts, `failing-check-${summary.themes.at(-1)}.png`) });
    }
  }

  // -- phase 2: the tutorial with a kernel, followed to merged ------------------------
  await page.goto(`${spec.base}/lab/tree/${spec.tutorial}?reset`); // a fresh workspace
  await dismissKernelDialog(page, 2000);
  await page.locator('.jp-Notebook').first().waitFor({ timeout: 60000 });
  await openSidebar(page);
  await page.evaluate(() => {
    const seen = (window.__jdSeen = []);
    const note = () => {
      for (const item of document.querySelectorAll('#jupyter-delegate-sidebar .jd-sidebar-task')) {
        const state = item.getAttribute('data-state');
        if (seen[seen.length - 1] !== state) {
          seen.push(state);
        }
      }
    };
    new MutationObserver(note).observe(document.body, { subtree: true, childList: true, attributes: true });
    note();
  });
  await runAll(page);
  await page.waitForSelector('#jupyter-delegate-sidebar .jd-sidebar-task[data-state="merged"]', {
    timeout: 180000
  });
  summary.tutorialStates = await page.evaluate(() => window.__jdSeen);
  check(
    summary.tutorialStates.some(s => s !== 'merged'),
    `the sidebar jumped straight to merged: ${JSON.stringify(summary.tutorialStates)}`
  );
  // The live task view (ipywidgets) is in the same output area: the card folds to one line.
  await page.waitForSelector('.jp-Notebook .jd-card[data-state="merged"]', { timeout: 30000 });
  const live = await page.$eval('.jp-Notebook .jd-card[data-state="merged"]', card => ({
    folded: card.classList.contains('jd-folded'),
    widgetBeside: !!card.closest('.jp-OutputArea')?.querySelector('.jupyter-widgets'),
    header: card.querySelector('.jd-card-header')?.textContent
  }));
  summary.tutorialCard = live;
  check(live.widgetBeside && live.folded, `the card beside the live view is not folded: ${JSON.stringify(live)}`);
  summary.tutorialCounts = await page.$eval('#jupyter-delegate-sidebar .jd-sidebar-counts', e => e.textContent);
  await page.locator('.jp-Notebook .jd-card[data-state="merged"]').scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(spec.artifacts, 'tutorial-merged.png') });

  // -- phase 3: a tool call opened in the live log stays open while the task runs -----
  await page.goto(`${spec.base}/lab/tree/${spec.live}?reset`);
  await page.locator('.jp-Notebook').first().waitFor({ timeout: 60000 });
  await runAll(page);
  const toolCalls = '.jp-Notebook .jupyter-widgets details.jd-tool';
  const firstDone = () =>
    document.querySelectorAll('.jp-Notebook .jupyter-widgets details.jd-tool').length >= 3 &&
    !document.querySelector('.jp-Notebook .jupyter-widgets details.jd-tool summary').textContent.includes('…');
  await page.waitForFunction(firstDone, null, { timeout: 120000 });
  await page.locator(toolCalls).first().locator('summary').click();
  const opened = await page.locator(toolCalls).first().evaluate(d => d.open);
  check(opened, 'clicking the first tool call did not open it');
  const openedText = await page.locator(toolCalls).first().locator('summary').textContent();
  // Later steps arrive: the log grows by at least two more tool calls.
  const before = await page.locator(toolCalls).count();
  await page.waitForFunction(
    n => document.querySelectorAll('.jp-Notebook .jupyter-widgets details.jd-tool').length >= n,
    before + 2,
    { timeout: 60000 }
  );
  summary.liveLog = await page.$$eval(toolCalls, items =>
    items.map(d => ({ summary: d.querySelector('summary').textContent.trim(), open: d.open }))
  );
  const first = summary.liveLog[0];
  check(
    first.summary === openedText.trim() && first.open,
    `the tool call opened while the task ran closed again: ${JSON.stringify(summary.liveLog)}`
  );
  await page.screenshot({ path: join(spec.artifacts, 'live-log-open.png') });

  // The task's check fails: the review under the cell shows its last lines, light and dark.
  const reviewTail = '.jp-Notebook .jupyter-widgets pre.jd-tail';
  await page.waitForSelector(reviewTail, { timeout: 120000 });
  summary.reviewTail = await page.$eval(reviewTail, pre => ({
    text: pre.textContent,
    markup: pre.querySelectorAll('*').length,
    whole: !!pre.closest('td')?.querySelector('details.jd-whole:not([open])')
  }));
  const checksTable = page.locator('.jp-Notebook .jupyter-widgets table.jd-checks');
  for (const theme of ['JupyterLab Dark', 'JupyterLab Light']) {
    await setTheme(page, theme);
    await checksTable.scrollIntoViewIfNeeded();
    const name = theme.includes('Dark') ? 'dark' : 'light';
    await checksTable.screenshot({ path: join(spec.artifacts, `review-failing-check-${name}.png`) });
  }
  check(summary.consoleErrors.length === 0, `errors in the page: ${summary.consoleErrors.join(' | ')}`);
  console.log(JSON.stringify(summary));
} catch (error) {
  await page.screenshot({ path: join(spec.artifacts, 'failure.png') }).catch(() => undefined);
  console.log(JSON.stringify(summary));
  console.error(`browser test failed: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
