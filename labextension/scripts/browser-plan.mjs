// A plan in a real JupyterLab with a kernel (tests/test_browser_plan.py): a %%delegate-plan
// cell shows its draft in the PlanView; a dependency that makes a cycle is refused, named in
// the widget; a subtask's goal is edited and saved; Run plan runs it, the graph following it
// as each subtask in review is approved from its row; Approve plan integrates it; Insert as
// cell puts a %%delegate-plan cell of it below, and a task's id opens its view in a new cell.
// Then two attempts side by side (AttemptsView): their difference, Keep on the first.
// Screenshots of the editor and the graph, light and dark, and of the attempts.
// Usage: node scripts/browser-plan.mjs SPEC.json
//   SPEC: { "base": URL, "notebook": "plan.ipynb", "chromium": PATH, "artifacts": DIR,
//           "docs": DIR (the screenshots the README shows), "goal": the edited goal }
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { acceptKernel, check, launch, runAll, setTheme } from './lib.mjs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const summary = { themes: [], approved: [], seen: [] };
const VIEW = '.jp-Notebook .jdp';

const browser = await launch(spec);
const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
const row = name => page.locator(`${VIEW} .jdp-row[data-name="${name}"]`);
const states = () =>
  page.$$eval(`${VIEW} .jdp-statuses .jdp-row`, rows =>
    Object.fromEntries(rows.map(r => [r.dataset.name, r.dataset.state]))
  );
const feedback = () => page.$eval(`${VIEW} .jdp-feedback`, n => n.textContent);
const cellSources = () =>
  page.$$eval('.jp-Notebook .jp-Cell .jp-InputArea .cm-content', nodes =>
    nodes.map(n => [...n.querySelectorAll('.cm-line')].map(l => l.textContent).join('\n'))
  );

async function shoot(name, where = spec.artifacts) {
  const view = page.locator(VIEW);
  await view.scrollIntoViewIfNeeded();
  await page.waitForTimeout(300);
  await view.screenshot({ path: join(where, name) });
}

// Approve, from its row, every subtask in review; until `done(states)` holds.
async function approveUntil(done, what, timeout = 150000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const now = await states();
    const key = JSON.stringify(now);
    if (summary.seen[summary.seen.length - 1] !== key) summary.seen.push(key);
    if (done(now)) return now;
    check(Date.now() < deadline, `timed out waiting for ${what}: ${key}`);
    for (const [name, state] of Object.entries(now)) {
      if (state !== 'review' || summary.approved.includes(name)) continue;
      const approve = row(name).locator('.jdp-approve-task');
      const before = await feedback();
      try {
        await approve.click({ timeout: 3000 });
        // its answer: a sentence beside the buttons (not the "approve_task…" while busy)
        await page.waitForFunction(
          ([sel, old]) => {
            const text = document.querySelector(sel)?.textContent || '';
            return text && text !== old && !text.endsWith('\u2026');
          },
          [`${VIEW} .jdp-feedback`, before],
          { timeout: 30000 }
        );
        const said = await feedback();
        check(said.includes('approved'), `approving ${name} said: ${said}`);
        summary.approved.push(name);
      } catch (error) {
        if (String(error).includes('approving')) throw error;
        // the row was drawn again under the click: try again on the next round
      }
    }
    await page.waitForTimeout(400);
  }
}

try {
  await page.goto(`${spec.base}/lab/tree/${spec.notebook}?reset`);
  await page.locator('.jp-Notebook').first().waitFor({ timeout: 60000 });
  await acceptKernel(page);
  await setTheme(page, 'JupyterLab Light');
  summary.themes.push('light');
  // The draft: one editable row per subtask, the graph beside it. On a loaded machine a
  // Run All can stop after the first cell: run them all again (the plan cell re-run
  // re-attaches to its plan).
  for (let attempt = 1; ; attempt++) {
    await runAll(page);
    const shown = await page
      .waitForSelector(`${VIEW}[data-state="draft"] .jdp-editor .jdp-row`, { timeout: 60000 })
      .then(() => true, () => false);
    if (shown) break;
    check(attempt < 3, 'the plan view never showed');
  }
  summary.rows = await page.$$eval(`${VIEW} .jdp-editor .jdp-row`, rows => rows.map(r => r.dataset.name));
  summary.draftNodes = await page.$$eval(`${VIEW} .jdg-node`, nodes => nodes.map(n => n.dataset.state));
  summary.cellMime = await page.evaluate(() => {
    const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
    const plan = cells.find(c => (c.textContent || '').includes('%%delegate-plan'));
    return plan ? plan.querySelector('.cm-content')?.dataset.language || '' : '';
  });

  // The goal of "left", edited: the editor as the README shows it.
  await row('left').locator('.jdp-goal').fill(spec.goal);
  summary.unsaved = await page.$eval(`${VIEW} .jdp-unsaved`, n => n.textContent);
  await shoot('plan-editor.png', spec.docs);

  // A dependency that makes a cycle: refused, the problem named in the widget, the edits
  // kept; undone, the edits are saved.
  await row('base').locator('.jdp-depends').fill('join');
  await page.locator(`${VIEW} .jdp-save`).click();
  await page.waitForSelector(`${VIEW} .jdp-errors li`, { timeout: 30000 });
  summary.refused = await page.$eval(`${VIEW} .jdp-errors`, n => n.textContent);
  summary.refusedFeedback = await feedback();
  summary.goalKept = await row('left').locator('.jdp-goal').inputValue();
  await shoot('plan-editor-refused.png');
  await row('base').locator('.jdp-depends').fill('');
  await page.locator(`${VIEW} .jdp-save`).click();
  await page.waitForFunction(
    sel => (document.querySelector(sel)?.textContent || '').startsWith('Saved:'),
    `${VIEW} .jdp-feedback`,
    { timeout: 30000 }
  );
  summary.saved = await feedback();
  summary.errorsAfterSave = await page.$eval(`${VIEW} .jdp-errors`, n => n.textContent);
  summary.savedGoal = await row('left').locator('.jdp-goal').inputValue();

  // Run it; approve each subtask as it reaches review. The graph, light and dark, once
  // "base" is merged and the two after it are at work.
  await page.locator(`${VIEW} .jdp-run`).click();
  await page.waitForSelector(`${VIEW}[data-state="running"] .jdp-statuses`, { timeout: 30000 });
  await approveUntil(
    s => s.base === 'merged' && ['running', 'review'].includes(s.left) && ['running', 'review', 'queued'].includes(s.right),
    'base merged, left and right at work'
  );
  summary.graphStates = await page.$$eval(`${VIEW} .jdg-node`, nodes =>
    Object.fromEntries(nodes.map(n => [n.dataset.name, n.dataset.state]))
  );
  summary.guide = await page.$eval(`${VIEW} .jdp-reason`, n => n.textContent);
  await shoot('plan-graph.png', spec.docs);
  await setTheme(page, 'JupyterLab Dark');
  summary.themes.push('dark');
  await shoot('plan-graph-dark.png', spec.docs);
  await setTheme(page, 'JupyterLab Light');
  summary.themes.push('light');

  await approveUntil(s => Object.values(s).every(v => v === 'merged'), 'every subtask approved');
  await page.waitForSelector(`${VIEW}[data-state="ready"] .jdp-approve:not([disabled])`, { timeout: 30000 });
  await page.locator(`${VIEW} .jdp-approve`).click();
  await page.waitForSelector(`${VIEW}[data-state="integrated"]`, { timeout: 60000 });
  summary.integrated = await page.$eval(`${VIEW} .jdp-reason`, n => n.textContent);
  summary.finalNodes = await page.$$eval(`${VIEW} .jdg-node`, nodes => nodes.map(n => n.dataset.state));
  await shoot('plan-integrated.png');

  // Best-of-N: two attempts side by side, the difference of the two, the first kept.
  const ATT = '.jp-Notebook .jda';
  await page.waitForFunction(
    sel => [...document.querySelectorAll(`${sel} .jda-row`)].filter(r => r.dataset.state === 'review').length === 2,
    ATT,
    { timeout: 120000 }
  );
  await page.waitForSelector(`${ATT} .jda-diff .jda-file`, { timeout: 30000 });
  summary.attempts = await page.$$eval(`${ATT} .jda-row`, rows =>
    rows.map(r => ({ index: r.dataset.index, state: r.dataset.state, text: r.textContent }))
  );
  summary.attemptsDiff = await page.$eval(`${ATT} .jda-diff`, n => n.textContent);
  const attempts = page.locator(ATT);
  await attempts.scrollIntoViewIfNeeded();
  await page.waitForTimeout(300);
  await attempts.screenshot({ path: join(spec.docs, 'attempts.png') });
  await page.locator(`${ATT} .jda-row[data-index="1"] .jda-keep`).click();
  await page.waitForSelector(`${ATT} .jda-row.jda-kept`, { timeout: 60000 });
  await page.waitForFunction(
    sel => document.querySelector(`${sel} .jda-row[data-index="2"]`)?.dataset.state === 'rejected',
    ATT,
    { timeout: 60000 }
  );
  summary.kept = await page.$eval(`${ATT} .jda-feedback`, n => n.textContent);
  summary.keptStates = await page.$$eval(`${ATT} .jda-row`, rows =>
    Object.fromEntries(rows.map(r => [r.dataset.index, r.dataset.state]))
  );
  await attempts.screenshot({ path: join(spec.artifacts, 'attempts-kept.png') });

  // Insert as cell: a %%delegate-plan cell holding the plan's YAML, below.
  const before = (await cellSources()).length;
  await page.locator(`${VIEW} .jdp-insert`).click();
  await page.waitForFunction(n => document.querySelectorAll('.jp-Notebook .jp-Cell').length > n, before, {
    timeout: 20000
  });
  const plans = (await cellSources()).filter(s => s.startsWith('%%delegate-plan'));
  summary.inserted = plans.length === 2 ? plans[1] : ''; // the plan's own cell, then the new one
  summary.insertedFeedback = await feedback();
  summary.copyShown = await page.$$eval(`${VIEW} .jdp-yaml`, n => n.length);

  // A task's id: its view in a new cell below, run.
  const task = await row('join').locator('.jdp-task').textContent();
  await row('join').locator('.jdp-task').click();
  await page.waitForFunction(
    id => [...document.querySelectorAll('.jp-Notebook .jupyter-widgets .jd-header code')].some(c => c.textContent === id),
    task,
    { timeout: 60000 }
  );
  summary.opened = task;
  summary.openedSource = (await cellSources()).find(s => s === `%delegate show ${task}`) || '';
} catch (error) {
  await page.screenshot({ path: join(spec.artifacts, 'plan-failure.png') }).catch(() => undefined);
  console.error(JSON.stringify(summary));
  throw error;
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
