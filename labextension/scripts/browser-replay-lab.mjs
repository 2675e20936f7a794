// The replay in JupyterLab. Run by tests/test_browser_replay.py: node
// scripts/browser-replay-lab.mjs SPEC.json, SPEC {"base", "notebook", "probe": step index,
// "run": bool, "prefix": screenshot name prefix, "chromium", "artifacts"}.
// - run false: a saved notebook's replay output with no kernel: the MIME renderer
//   (src/replay-mime.ts) draws it from the output's own data, in place of the widget view
//   the same output carries (whose kernel is gone);
// - run true (the extension disabled): Run All Cells; anywidget draws the ReplayView, whose
//   diffs the kernel sends when a step is shown.
// Screenshots: PREFIX-light.png, PREFIX-dark.png.
// Prints a JSON summary as its last line.
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { acceptKernel, check, dismissKernelDialog, launch, runAll, setTheme } from './lib.mjs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const summary = { errors: [] };
const browser = await launch(spec);
const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
try {
  page.on('pageerror', e => summary.errors.push(String(e)));
  await page.goto(`${spec.base}/lab/tree/${spec.notebook}`);
  if (spec.run) {
    // JupyterLab may ask which kernel to start: the notebook's own
    await page.locator('.jp-Dialog').waitFor({ state: 'visible', timeout: 15000 }).catch(() => undefined);
    await acceptKernel(page);
    await runAll(page).catch(async error => {
      const dialog = await page.locator('.jp-Dialog').textContent().catch(() => '');
      throw new Error(`Run All failed (dialog: ${dialog}): ${error}`);
    });
  }
  else await dismissKernelDialog(page);
  await page.locator('.jp-Notebook .jdp-step').first().waitFor({ timeout: 60000 });
  summary.outputs = await page.$$eval('.jp-Notebook .jp-OutputArea-output', els =>
    els.map(e => ({
      replay: e.classList.contains('jd-replay'),
      widget: e.classList.contains('jupyter-widgets') || Boolean(e.querySelector('.jupyter-widgets'))
    }))
  );
  summary.count = await page.locator('.jp-Notebook .jdp-step').count();
  summary.widgetError = await page.locator('text=Error displaying widget').count();
  const slider = page.locator('.jp-Notebook .jdp-slider');
  await slider.evaluate((el, i) => {
    el.value = String(i);
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, spec.probe);
  // this step's diff drawn: asked of the kernel where the data has none (not "Loading…")
  await page.waitForFunction(i => {
    const root = document.querySelector('.jp-Notebook .jdp');
    return root.dataset.step === String(i) && root.dataset.diffStep === String(i) &&
      !root.querySelector('.jdp-diff-wait');
  }, spec.probe, { timeout: 30000 });
  summary.shown = await page.evaluate(() => ({
    position: document.querySelector('.jdp-position').textContent,
    cost: document.querySelector('.jdp-cost-now').textContent,
    diffFiles: [...document.querySelectorAll('.jdp .d2h-file-name')].map(n => n.textContent.trim()),
    added: [...document.querySelectorAll('.jdp .d2h-ins .d2h-code-line-ctn')].map(n => n.textContent)
  }));
  // j and ArrowDown step the replay, not JupyterLab's cell selection ("select the cell
  // below" in command mode), whether the list or the slider has the focus
  const activeCell = () => page.evaluate(() =>
    [...document.querySelectorAll('.jp-Notebook .jp-Cell')].findIndex(c => c.classList.contains('jp-mod-active'))
  );
  const stepShown = () => page.evaluate(() => Number(document.querySelector('.jp-Notebook .jdp').dataset.step));
  await page.locator('.jp-Notebook .jdp-step[data-index="1"]').click();
  summary.activeBefore = await activeCell();
  await page.keyboard.press('j');
  await page.waitForTimeout(200);
  summary.afterJ = await stepShown();
  await page.locator('.jp-Notebook .jdp-slider').focus();
  await page.keyboard.press('ArrowDown');
  await page.waitForTimeout(200);
  summary.afterDown = await stepShown();
  summary.activeAfter = await activeCell();
  await page.locator('.jp-Notebook .jdp-step[data-index="' + spec.probe + '"]').click();
  await page.waitForTimeout(300);
  await page.locator('.jp-Notebook .jdp').screenshot({ path: join(spec.artifacts, `${spec.prefix || 'replay-lab'}-light.png`) });
  await setTheme(page, 'JupyterLab Dark');
  summary.darkBackground = await page.evaluate(
    () => getComputedStyle(document.querySelector('.jp-Notebook .jdp')).backgroundColor
  );
  await page.locator('.jp-Notebook .jdp').screenshot({ path: join(spec.artifacts, `${spec.prefix || 'replay-lab'}-dark.png`) });
  await setTheme(page, 'JupyterLab Light');
} finally {
  await browser.close();
}
check(summary.count > 0, 'no replay was drawn');
console.log(JSON.stringify(summary));
