// The review widget (ReviewView, anywidget + diff2html) in a real JupyterLab with a kernel.
// Run by tests/test_browser_review.py: node scripts/browser-review.mjs SPEC.json, where SPEC
// is {"base": URL, "notebook": "review.ipynb", "app": "lab" | "notebook", "chromium",
// "artifacts", "prefix": screenshot name prefix}.
// The notebook shows two tasks in review: "failing" (its check fails) and "fixing" (proven).
// 1. failing: Approve asks "merge anyway?" naming why, in place; Merge anyway merges.
// 2. fixing: a click on new line 2 of calc.py adds a line comment; Request changes sends it
//    with feedback; round 2 comes; "Changes since the last review" shows only its change,
//    and the comment stands beside its line in "All changes".
// 3. the dark theme: the added lines' text has a contrast of at least 4.5:1.
// 4. fixing: Edit calc.py in the widget, Save, Commit my edits: the commit is marked yours.
// Prints a JSON summary as its last line.
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { check, dismissKernelDialog, launch, runAll, setTheme } from './lib.mjs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const prefix = spec.prefix || 'review';
const summary = {};

// The contrast of an element's text against what is really behind it (backgrounds with
// alpha composited up the ancestors, down from the page's).
async function contrastOf(locator) {
  return locator.evaluate(el => {
    const parse = c => {
      const srgb = c.match(/color\(srgb ([^)]+)\)/); // what color-mix() computes to
      if (srgb) {
        const [r, g, b, a] = srgb[1].split(/[ /]+/).filter(Boolean).map(Number);
        return [r * 255, g * 255, b * 255, a === undefined || Number.isNaN(a) ? 1 : a];
      }
      const m = c.match(/rgba?\(([^)]+)\)/);
      if (!m) throw new Error(`a colour this test cannot read: ${c}`);
      const [r, g, b, a] = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
      return [r, g, b, a === undefined || Number.isNaN(a) ? 1 : a];
    };
    const layers = [];
    for (let node = el; node; node = node.parentElement) {
      const bg = parse(getComputedStyle(node).backgroundColor);
      if (bg && bg[3] > 0) layers.push(bg);
      if (bg && bg[3] === 1) break;
    }
    let color = [255, 255, 255];
    for (const [r, g, b, a] of layers.reverse()) {
      color = [r * a + color[0] * (1 - a), g * a + color[1] * (1 - a), b * a + color[2] * (1 - a)];
    }
    const fg = parse(getComputedStyle(el).color);
    const text = [0, 1, 2].map(i => fg[i] * fg[3] + color[i] * (1 - fg[3]));
    const lum = ([r, g, b]) => {
      const f = v => {
        v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
      };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const [hi, lo] = [lum(text), lum(color)].sort((x, y) => y - x);
    return { ratio: (hi + 0.05) / (lo + 0.05), fg: text.map(Math.round), bg: color.map(Math.round) };
  });
}

const browser = await launch(spec);
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
try {
  const app = spec.app || 'lab';
  await page.goto(`${spec.base}/${app === 'lab' ? 'lab/tree' : 'notebooks'}/${spec.notebook}${app === 'lab' ? '?reset' : ''}`);
  await page.waitForSelector('.jp-Notebook', { timeout: 60000 });
  if (app === 'lab') {
    await dismissKernelDialog(page, 3000);
    await runAll(page);
  } else {
    await page.waitForTimeout(3000);
    await page.locator('.lm-MenuBar-item', { hasText: /^Run$/ }).click();
    await page.getByRole('menuitem', { name: 'Run All Cells', exact: true }).click();
  }
  const failing = page.locator('.jdr[data-name="failing"]');
  const fixing = page.locator('.jdr[data-name="fixing"]');
  await failing.waitFor({ timeout: 120000 });
  await fixing.waitFor({ timeout: 120000 });
  await page.waitForFunction(() => document.querySelectorAll('.jdr[data-state="review"]').length === 2, null, { timeout: 60000 });

  // -- 1. failing checks: Approve asks, Merge anyway merges ------------------------------------
  summary.failingVerdict = (await failing.locator('.jdr-verdict').textContent()).trim();
  summary.failingFlag = (await failing.locator('.jdr-summary .jdr-flag').textContent()).trim();
  await failing.locator('.jdr-approve').click();
  const ask = failing.locator('.jdr-ask');
  await ask.waitFor({ state: 'visible', timeout: 30000 });
  summary.ask = (await ask.textContent()).trim();
  summary.stateAfterApprove = await failing.getAttribute('data-state');
  await failing.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(spec.artifacts, `${prefix}-merge-anyway-light.png`) });
  const before = await failing.locator('.jdr-approve').boundingBox();
  await failing.locator('.jdr-force').click();
  await page.waitForFunction(() => document.querySelector('.jdr[data-name="failing"] .jdr-decision').textContent !== '', null, { timeout: 60000 });
  summary.failingState = await failing.getAttribute('data-state');
  summary.decision = (await failing.locator('.jdr-decision').textContent()).trim();
  summary.feedback = (await failing.locator('.jdr-feedback').textContent()).trim();
  const bar = await failing.locator('.jdr-bar').boundingBox();
  summary.feedbackNearClick = Math.abs(bar.y - before.y) < 200;

  // -- 2. a line comment, request changes, round 2 ----------------------------------------------
  summary.fixingVerdict = (await fixing.locator('.jdr-verdict').textContent()).trim();
  await fixing.scrollIntoViewIfNeeded();
  const lineTwo = fixing
    .locator('.d2h-file-wrapper[data-path="calc.py"] td.d2h-code-linenumber')
    .filter({ has: page.locator('.line-num2', { hasText: /^\s*2\s*$/ }) });
  await lineTwo.first().click();
  const form = fixing.locator('.jdr-comment-form');
  await form.waitFor({ timeout: 10000 });
  await form.locator('textarea').fill('Keep this line exactly as it is.');
  await form.locator('.jdr-comment-add').click();
  await fixing.locator('.jdr-comment-draft').waitFor({ timeout: 10000 });
  await fixing.locator('.jdr-request-toggle').click();
  await fixing.locator('.jdr-changes-text').fill('Add a sub() too.');
  summary.drafts = await fixing.locator('.jdr-drafts li').allTextContents();
  await page.screenshot({ path: join(spec.artifacts, `${prefix}-line-comment-light.png`) });
  await fixing.locator('.jdr-request-send').click();
  const since = fixing.locator('.jdr-since');
  await since.waitFor({ timeout: 120000 });
  await page.waitForFunction(() => document.querySelector('.jdr[data-name="fixing"]').dataset.state === 'review', null, { timeout: 60000 });
  summary.roundText = (await fixing.locator('.jdr-round').first().textContent()).trim();
  // all changes: the last review's comment beside line 2
  summary.earlierComment = (await fixing.locator('.jdr-comment-earlier').first().textContent({ timeout: 10000 })).trim();
  await since.click();
  // the diff drawn is the one since the last review (the Python side says which it sent)
  await page.waitForFunction(() => document.querySelector('.jdr[data-name="fixing"] .jdr-diff').dataset.since !== '', null, { timeout: 30000 });
  summary.sinceAdded = await fixing.locator('.d2h-ins .d2h-code-line-ctn').allTextContents();
  summary.sinceFiles = await fixing.locator('.d2h-file-wrapper').evaluateAll(ws => ws.map(w => w.dataset.path));
  summary.highlighted = await fixing.locator('.d2h-code-line-ctn .hljs-keyword').count();
  await page.screenshot({ path: join(spec.artifacts, `${prefix}-round-2-light.png`) });

  // -- 3. dark theme: readable added lines; split view ---------------------------------------------
  if (app === 'lab') {
    await setTheme(page, 'JupyterLab Dark');
    summary.darkContrast = await contrastOf(fixing.locator('.d2h-ins .d2h-code-line-ctn').first());
    summary.darkLineNumberContrast = await contrastOf(fixing.locator('td.d2h-ins.d2h-code-linenumber').first());
    await fixing.scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(spec.artifacts, `${prefix}-round-2-dark.png`) });
    await fixing.locator('.jdr-tab', { hasText: 'All changes' }).click();
    await fixing.locator('.jdr-style-toggle').click();
    await fixing.locator('.d2h-file-side-diff').first().waitFor({ timeout: 10000 });
    summary.split = await fixing.locator('.d2h-file-side-diff').count();
    await page.screenshot({ path: join(spec.artifacts, `${prefix}-split-dark.png`) });
    await setTheme(page, 'JupyterLab Light');
  }
  summary.lightContrast = await contrastOf(fixing.locator('.d2h-ins .d2h-code-line-ctn').first());

  // -- 4. fix it yourself: Edit, Save, Commit my edits; the commit is marked yours ----------------
  await fixing.locator('.jdr-edit-button').first().click();
  const editor = fixing.locator('textarea.jdr-editor');
  await editor.waitFor({ timeout: 30000 });
  await editor.fill((await editor.inputValue()) + '# checked by hand\n');
  await fixing.locator('.jdr-save').click();
  await page.waitForFunction(() => document.querySelector('.jdr[data-name="fixing"] .jdr-feedback').textContent.startsWith('Saved'), null, { timeout: 30000 });
  await fixing.locator('.jdr-commit-message').fill('My own touch');
  await fixing.locator('.jdr-commit').click();
  await fixing.locator('.jdr-human').waitFor({ timeout: 60000 });
  await page.waitForFunction(() => !document.querySelector('.jdr[data-name="fixing"] .jdr-feedback').textContent.endsWith('\u2026'), null, { timeout: 60000 });
  summary.humanEdit = (await fixing.locator('.jdr-human').first().textContent()).trim();
  summary.afterEdit = (await fixing.locator('.jdr-feedback').textContent()).trim();
  await fixing.locator('.jdr-human').first().scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(spec.artifacts, `${prefix}-human-edit-light.png`) });
  check(summary.failingVerdict === 'checks fail', `verdict: ${summary.failingVerdict}`);
} catch (error) {
  await page.screenshot({ path: join(spec.artifacts, `${prefix}-failure.png`) }).catch(() => undefined);
  console.error(error);
  console.log(JSON.stringify(summary));
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log(JSON.stringify(summary));
