// Views that survive the kernel, in a real JupyterLab (or Notebook 7: spec.app). Spec:
//   { "base": URL, "app": "jupyterlab" | "notebook", "notebook": "restart.ipynb",
//     "saved": "records.ipynb", "prefix": "lab" }
// 1. A slow task runs under its cell (the notebook's 3rd cell); the kernel is restarted
//    mid-run: the dead live view is hidden (no broken-widget icons) and the card unfolds.
// 2. The setup and `%load_ext` cells run again: the card says `interrupted`, with Resume.
// 3. Resume: the task continues, a live view is back in the cell, the same card reaches
//    review (screenshots light and dark); the notebook is saved (pytest reads the file).
// 4. A new `%%delegate` cell typed by hand: no Python auto-indent after a line ending in
//    ":" (a Python cell typed the same way is indented, so the check can fail).
// 5. A saved notebook of records opened without a kernel shows the cards.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { check, dismissKernelDialog, launch, setTheme } from './lib.mjs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
mkdirSync(spec.artifacts, { recursive: true });
const prefix = spec.app === 'notebook' ? 'nb7-' : '';
const shot = name => join(spec.artifacts, `${prefix}${name}.png`);
const summary = { consoleErrors: [], app: spec.app };
const url = file => (spec.app === 'notebook' ? `${spec.base}/notebooks/${file}` : `${spec.base}/lab/tree/${file}?reset`);

const browser = await launch(spec);
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });

const taskCell = '.jp-Notebook .jp-Cell:nth-child(3)';
const card = `${taskCell} .jd-card`;

async function menu(top, item) {
  await page.locator('.lm-MenuBar-item', { hasText: new RegExp(`^${top}$`) }).click();
  await page.locator('.lm-Menu-itemLabel', { hasText: new RegExp(`^${item}`) }).first().click();
}

async function kernelIdle() {
  await page.waitForFunction(
    () => {
      const el = document.querySelector('.jp-Notebook-ExecutionIndicator');
      if (el) {
        return el.getAttribute('data-status') === 'idle';
      }
      const text = document.querySelector('.jp-KernelStatus, #jp-kernel-status')?.textContent || '';
      return /idle/i.test(text) || text === '';
    },
    null,
    { timeout: 60000 }
  );
}

async function runCell(index) {
  // Select the cell by its prompt area, then Shift+Enter; a cell run while the kernel is
  // still connecting runs nothing, so it is run again until its prompt has gone through
  // "[*]" to a number (after a restart the number can be the one it had).
  const prompt = `.jp-Notebook .jp-Cell:nth-child(${index}) .jp-InputPrompt`;
  for (let attempt = 0; attempt < 4; attempt++) {
    await page.$eval(prompt, node => {
      window.__jdRan = false;
      let busy = false;
      const observer = new MutationObserver(() => {
        const text = node.textContent || '';
        busy = busy || text.includes('*');
        if (busy && /\[\d+\]/.test(text)) {
          window.__jdRan = true;
          observer.disconnect();
        }
      });
      observer.observe(node, { childList: true, subtree: true, characterData: true });
    });
    await page.locator(prompt).click();
    await page.keyboard.press('Shift+Enter');
    const ran = await page
      .waitForFunction(() => window.__jdRan === true, null, { timeout: 15000 })
      .then(() => true, () => false);
    if (ran) {
      return;
    }
  }
  throw new Error(`cell ${index} did not run`);
}

async function save() {
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+s');
  await page.waitForTimeout(1500);
}

async function cardState() {
  return page.$eval(card, c => ({
    state: c.dataset.state,
    folded: c.classList.contains('jd-folded'),
    resume: !!c.querySelector('button.jd-resume'),
    text: c.querySelector('.jd-card-header')?.textContent
  }));
}

async function brokenViews() {
  // Widgets shown with their kernel gone: disconnected ones or "Error displaying widget",
  // that the user can see.
  return page.$$eval('.jp-Notebook .jupyter-widgets', nodes =>
    nodes.filter(n => {
      const visible = n.getClientRects().length > 0 && getComputedStyle(n).visibility !== 'hidden';
      const broken =
        n.classList.contains('jupyter-widgets-disconnected') ||
        !!n.querySelector('.jupyter-widgets-disconnected') ||
        (n.textContent || '').includes('Error displaying widget');
      return visible && broken;
    }).length
  );
}

try {
  page.on('pageerror', error => summary.consoleErrors.push(String(error)));
  page.on('console', m => {
    if (m.type() === 'error' && /delegate/i.test(m.text())) summary.consoleErrors.push(m.text());
  });

  // -- 1: a slow task, the kernel restarted mid-run --------------------------------------
  await page.goto(url(spec.notebook));
  await page.locator('.jp-Notebook').first().waitFor({ timeout: 60000 });
  await kernelIdle();
  for (const i of [1, 2, 3]) {
    await runCell(i);
  }
  await page.waitForSelector(`${taskCell} .jupyter-widgets .jd-tool`, { timeout: 90000 });
  summary.beforeRestart = await cardState();
  check(summary.beforeRestart.state === 'running', `not running: ${JSON.stringify(summary.beforeRestart)}`);
  check(summary.beforeRestart.folded, 'the card beside a live view is not folded');
  // Not saved first: the new kernel asks the front end for the records it shows.
  await menu('Kernel', 'Restart Kernel');
  const dialog = page.locator('.jp-Dialog');
  await dialog.waitFor({ timeout: 10000 });
  await dialog.locator('button', { hasText: /^Restart$/ }).click();
  await dialog.waitFor({ state: 'detached', timeout: 10000 });
  await kernelIdle();
  await page.waitForTimeout(1500);
  summary.afterRestart = await cardState();
  summary.brokenAfterRestart = await brokenViews();
  summary.staleHidden = await page.locator(`${taskCell} .jd-stale-view`).count();
  await page.locator(card).scrollIntoViewIfNeeded();
  await page.screenshot({ path: shot('restart-after') });
  check(summary.brokenAfterRestart === 0, `broken widgets shown after the restart: ${summary.brokenAfterRestart}`);
  check(summary.staleHidden >= 1, 'the dead live view was not hidden');
  check(!summary.afterRestart.folded, 'the card did not unfold once its live view was gone');

  // -- 2: the new kernel loads the extension: the card tells the truth -------------------
  await runCell(1);
  await runCell(2);
  await page.waitForSelector(`${card}[data-state="interrupted"]`, { timeout: 30000 });
  summary.interrupted = await cardState();
  check(summary.interrupted.resume, 'the interrupted card offers no Resume');
  await page.locator(card).scrollIntoViewIfNeeded();
  await page.screenshot({ path: shot('restart-interrupted') });

  // -- 3: Resume from the card ------------------------------------------------------------
  await page.locator(`${card} button.jd-resume`).click();
  await page.waitForSelector(`${taskCell} .jupyter-widgets .jd-tool`, { timeout: 60000 });
  summary.resumedLive = await cardState();
  await page.waitForSelector(`${card}[data-state="review"]`, { timeout: 180000 });
  summary.review = await cardState();
  summary.brokenAfterResume = await brokenViews();
  summary.cardsInNotebook = await page.$$eval('.jp-Notebook .jd-card', cs => cs.map(c => c.dataset.taskId));
  check(summary.brokenAfterResume === 0, 'broken widgets after the resume');
  check(summary.cardsInNotebook.length === 1, `cards: ${summary.cardsInNotebook}`);
  for (const theme of ['JupyterLab Light', 'JupyterLab Dark']) {
    if (spec.app === 'jupyterlab') {
      await setTheme(page, theme);
    }
    await page.locator(card).scrollIntoViewIfNeeded();
    await page.screenshot({ path: shot(`restart-resumed-review-${theme.includes('Dark') ? 'dark' : 'light'}`) });
    if (spec.app !== 'jupyterlab') break;
  }
  if (spec.app === 'jupyterlab') {
    await setTheme(page, 'JupyterLab Light');
  }
  await save();

  // -- 4: the %%delegate cell is not indented as Python ----------------------------------
  const typed = async lines => {
    await page.locator('.jp-Notebook .jp-Cell').last().locator('.jp-InputPrompt').click();
    await page.keyboard.press('b'); // a new cell below, in command mode
    await page.keyboard.press('Enter'); // edit it
    for (const [n, line] of lines.entries()) {
      if (n) await page.keyboard.press('Enter');
      await page.keyboard.type(line);
    }
    await page.waitForTimeout(300);
    return page.$eval('.jp-Notebook .jp-Cell:last-child .cm-content', c =>
      Array.from(c.querySelectorAll('.cm-line')).map(l => l.textContent)
    );
  };
  summary.pythonCell = await typed(['def discount(total):', 'return total']);
  summary.delegateCell = await typed(['%%delegate --repo shop', 'Fix the totals:', 'check: pytest -q']);
  check(summary.pythonCell[1].startsWith(' '), `a Python cell is not auto-indented: ${summary.pythonCell}`);
  check(
    JSON.stringify(summary.delegateCell) ===
      JSON.stringify(['%%delegate --repo shop', 'Fix the totals:', 'check: pytest -q']),
    `the %%delegate cell was indented: ${JSON.stringify(summary.delegateCell)}`
  );
  await page.locator('.jp-Notebook .jp-Cell:last-child').screenshot({ path: shot('delegate-cell-plain') });
  await page.keyboard.press('Escape');

  // -- 5: saved records without a kernel ---------------------------------------------------
  if (spec.saved) {
    await page.goto(url(spec.saved));
    await dismissKernelDialog(page);
    await page.waitForSelector('.jp-Notebook .jd-card', { timeout: 60000 });
    await page.waitForTimeout(800);
    summary.savedCards = await page.$$eval('.jp-Notebook .jd-card', cs =>
      cs.map(c => ({ id: c.dataset.taskId, state: c.dataset.state, folded: c.classList.contains('jd-folded') }))
    );
    summary.savedBroken = await brokenViews();
    await page.screenshot({ path: shot('saved-records-no-kernel') });
  }
  summary.sidebarIcon = await page.$eval(
    '.jp-SideBar [data-id="jupyter-delegate-sidebar"] svg, [data-id="jupyter-delegate-sidebar"] svg',
    svg => svg.outerHTML
  ).catch(() => '');
  console.log(JSON.stringify(summary));
} catch (error) {
  await page.screenshot({ path: shot('restart-failure') }).catch(() => undefined);
  console.log(JSON.stringify(summary));
  console.error(`browser test failed: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
