// Real-browser test of the plans on the phone page (/delegate/, served by the server
// extension): a draft plan of five subtasks shows as a graph (a row per dependency depth,
// edges from parent to child); Run makes the server run it; its nodes change colour live
// as the subtasks run and reach review; tapping a node shows its task's card, whose
// Approve lets the server start the dependents; a subtask whose checks fail is restarted
// from its node; once every subtask is approved, Integrate merges the plan into main.
// Screenshots of the board in light and dark, at phone size.
//
//   node scripts/browser-plan.mjs SPEC.json
//
// SPEC: { "base": "http://127.0.0.1:PORT", "artifacts": DIR, "chromium": PATH,
//         "plan": "pXXXXXX" }
// Prints a JSON summary on the last line; exits non-zero on the first failed expectation.
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { check, launch } from './lib.mjs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
mkdirSync(spec.artifacts, { recursive: true });
const summary = { consoleErrors: [], seen: [] };
const shot = name => join(spec.artifacts, `plan-${name}.png`);

const browser = await launch(spec);
const context = await browser.newContext({
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  colorScheme: 'light'
});
const page = await context.newPage();
const card = page.locator(`section.plan[data-plan="${spec.plan}"]`);
const node = name => card.locator(`g.node[data-name="${name}"]`);
const states = () =>
  page.evaluate(id => {
    const found = {};
    for (const g of document.querySelectorAll(`section.plan[data-plan="${id}"] g.node`)) {
      found[g.dataset.name] = [...g.classList].filter(c => c !== 'node' && c !== 'selected')[0];
    }
    return found;
  }, spec.plan);
async function until(predicate, what, timeout = 90000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const now = await states();
    const key = JSON.stringify(now);
    if (summary.seen[summary.seen.length - 1] !== key) summary.seen.push(key);
    if (predicate(now)) return now;
    if (Date.now() > deadline) throw new Error(`${what}: the nodes are ${key}`);
    await page.waitForTimeout(250);
  }
}
async function approve(name) {
  // Tap the node (unless it is the one shown: a tap there hides it), then Approve on its
  // task's card, shown under the graph.
  if (!(await node(name).getAttribute('class')).includes('selected')) await node(name).tap();
  const approveButton = card.locator(`.subtask[data-subtask="${name}"] .card button.approve`);
  await approveButton.waitFor({ timeout: 20000 });
  await approveButton.tap();
  await until(s => s[name] === 'merged', `${name} approved`);
}

try {
  page.on('pageerror', error => summary.consoleErrors.push(String(error)));
  await page.goto(`${spec.base}/delegate/`);
  await card.waitFor({ timeout: 30000 });

  // The draft: five nodes in three rows, edges from parents to children.
  const first = await until(s => Object.keys(s).length === 5, 'the graph');
  summary.draft = first;
  check(first.model === 'ready' && first.docs === 'ready', `draft: ${JSON.stringify(first)}`);
  check(first.ui === 'planned', `ui: ${first.ui}`);
  const boxes = {};
  for (const name of ['model', 'csv', 'api', 'ui', 'docs']) boxes[name] = await node(name).boundingBox();
  check(boxes.csv.y > boxes.model.y && boxes.api.y === boxes.csv.y, 'csv and api: one row below model');
  check(boxes.ui.y > boxes.csv.y, 'ui: below csv and api');
  const edges = await card.locator('path.edge').evaluateAll(paths => paths.map(p => p.dataset.edge));
  summary.edges = edges.sort();
  check(
    JSON.stringify(summary.edges) ===
      JSON.stringify(['api->ui', 'csv->ui', 'model->api', 'model->csv']),
    `edges: ${summary.edges}`
  );
  summary.width = await page.evaluate(() => document.documentElement.scrollWidth);
  check(summary.width <= 390, `the page scrolls sideways: ${summary.width}px wide`);
  await card.locator('button.run').tap();

  // It runs in the server: model and docs (parallel 2) reach review, live.
  await until(s => s.model === 'review' && s.docs === 'review', 'model and docs in review');
  const docsLabel = await node('docs').locator('text.state').textContent();
  check(docsLabel.includes('checks fail'), `docs: ${docsLabel}`);
  await approve('model');

  // Its children start; the board in all its colours: approved, review, running, planned.
  await until(s => s.csv === 'review' && s.api === 'running', 'csv in review while api runs');
  await node('csv').tap();
  await card.locator('.subtask[data-subtask="csv"] .card').waitFor();
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(300);
  await page.screenshot({ path: shot('board-light') }); // the top of the page: the board
  await page.screenshot({ path: shot('page-light'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.waitForTimeout(300);
  await page.screenshot({ path: shot('board-dark') });
  summary.darkNode = await node('model').locator('rect').evaluate(r => getComputedStyle(r).fill);
  await page.emulateMedia({ colorScheme: 'light' });
  summary.csvCard = (await card.locator('.subtask .card').textContent()).trim().slice(0, 200);
  check(summary.csvCard.includes('Write csv.txt'), `the card of csv: ${summary.csvCard}`);
  await card.locator('.subtask[data-subtask="csv"] .card button.approve').tap();
  await until(s => s.csv === 'merged', 'csv approved');

  // docs' checks fail: restart it from its node; it comes back proven.
  await node('docs').tap();
  const restart = card.locator('.subtask[data-subtask="docs"] button.restart');
  await restart.waitFor({ timeout: 20000 });
  await restart.tap();
  await until(s => s.docs === 'review' || s.docs === 'running' || s.docs === 'queued', 'docs restarted');
  await page.waitForFunction(
    id => {
      const g = document.querySelector(`section.plan[data-plan="${id}"] g.node[data-name="docs"]`);
      return g && g.querySelector('text.state').textContent.includes('proven');
    },
    spec.plan,
    { timeout: 60000 }
  );
  await approve('docs');
  await until(s => s.api === 'review', 'api in review');
  await approve('api');
  await until(s => s.ui === 'review', 'ui in review');
  await approve('ui');

  // Every subtask approved: the plan is ready; Integrate merges it into main.
  const integrate = card.locator('button.integrate');
  await integrate.waitFor({ timeout: 30000 });
  await integrate.tap();
  await card.locator('.badge', { hasText: 'integrated' }).waitFor({ timeout: 60000 });
  summary.integrated = (await card.locator('.done').textContent()).trim();
  check(summary.integrated.startsWith('Integrated into main as '), summary.integrated);
  const plans = await page.evaluate(async () => (await fetch('api/plans')).json());
  summary.after = plans.plans.map(p => [p.id, p.state, p.subtasks.map(s => s.state)]);
  const tasks = await page.evaluate(async () => (await fetch('api/tasks')).json());
  summary.tasks = tasks.tasks.map(t => [t.id, t.state, (t.group || {}).name]);
  summary.cards = await page.locator('main > section.card').evaluateAll(cards =>
    cards.map(c => c.dataset.plan || c.dataset.task));
  check(!(await card.locator('svg').count()), 'the graph of an integrated plan is not folded');
  await card.locator('details.graph-box summary').tap();
  await node('ui').waitFor({ timeout: 10000 });
  await page.waitForTimeout(2500); // a poll redraws the page: the graph stays open
  check(await node('ui').isVisible(), 'the graph folded again on a redraw');
  summary.integratedNodes = await states();
  await page.screenshot({ path: shot('integrated-light'), fullPage: true });
  check(summary.consoleErrors.length === 0, `errors in the page: ${summary.consoleErrors.join(' | ')}`);
  console.log(JSON.stringify(summary));
} catch (error) {
  await page.screenshot({ path: shot('failure'), fullPage: true }).catch(() => undefined);
  console.log(JSON.stringify(summary));
  console.error(`browser test failed: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
