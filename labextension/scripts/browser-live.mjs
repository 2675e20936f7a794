// Live is live (tests/test_browser_live.py): in a real JupyterLab with a kernel, a task's
// live line ticks with no message from the kernel, names the running command and shows its
// last lines before it ends; the cost is the same in the live view, the card and the
// Delegations sidebar while the task spends and at review; the early header, shown first,
// gives way to the view's and is not saved. Screenshots light and dark.
// Usage: node scripts/browser-live.mjs SPEC.json
//   SPEC: { "base": URL, "notebook": "clock.ipynb", "chromium": PATH, "artifacts": DIR }
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { check, launch, openSidebar, runAll, setTheme } from './lib.mjs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const summary = { themes: [] };
const LIVE = '.jp-Notebook .jupyter-widgets .jd-live';

function seconds(text) {
  const m = /^(?:(\d+)m )?(\d+)s$/.exec((text || '').trim());
  return m ? Number(m[1] || 0) * 60 + Number(m[2]) : NaN;
}

function cost(text) {
  const m = /~?\$\d+\.\d+/.exec(text || '');
  return m ? m[0] : '';
}

async function costs(page) {
  return page.evaluate(() => {
    const text = sel => document.querySelector(sel)?.textContent || '';
    return {
      view: text('.jp-Notebook .jupyter-widgets .jd-header .jd-meta'),
      card: text('.jp-Notebook .jd-card .jd-card-header .jd-cost'),
      sidebar: text('#jupyter-delegate-sidebar .jd-sidebar-task .jd-cost'),
      total: text('#jupyter-delegate-sidebar .jd-count-cost')
    };
  });
}

const browser = await launch(spec);
const page = await browser.newPage({ viewport: { width: 1300, height: 1000 } });
// Every frame the kernel's websocket brings, counted: the clock must tick without them.
let frames = 0;
page.on('websocket', ws => {
  if (ws.url().includes('/channels')) {
    ws.on('framereceived', () => (frames += 1));
  }
});
try {
  await page.goto(`${spec.base}/lab/tree/${spec.notebook}?reset`);
  await page.locator('.jp-Notebook').first().waitFor({ timeout: 60000 });
  // JupyterLab may ask which kernel to start: the notebook's own (Python 3).
  const dialog = page.locator('.jp-Dialog');
  if (await dialog.waitFor({ state: 'visible', timeout: 8000 }).then(() => true, () => false)) {
    await dialog.locator('button', { hasText: 'Select' }).first().click();
    await dialog.waitFor({ state: 'detached', timeout: 10000 });
  }
  await openSidebar(page);
  await setTheme(page, 'JupyterLab Light');
  summary.themes.push('light');
  // What the live line showed, every 200 ms (kept in the summary: a failure says why).
  await page.evaluate(sel => {
    const trace = (window.__jdLive = []);
    setInterval(() => {
      const node = document.querySelector(sel);
      const text = node ? `${node.dataset.kind}|${node.textContent}` : '-';
      if (trace[trace.length - 1] !== text) {
        trace.push(text);
      }
    }, 200);
  }, LIVE);
  // The early header (header.py): seen, and never shown beside the live view's header.
  await page.evaluate(() => {
    const seen = (window.__jdEarly = { early: 0, live: 0, both: 0 });
    const shown = sel =>
      [...document.querySelectorAll(sel)].some(n => n.getClientRects().length > 0);
    new MutationObserver(() => {
      const early = shown('.jp-Notebook .jd-early .jd-header');
      const live = shown('.jp-Notebook .jupyter-widgets .jd-header');
      seen.early += early ? 1 : 0;
      seen.live += live ? 1 : 0;
      seen.both += early && live ? 1 : 0;
    }).observe(document.body, { childList: true, subtree: true, attributes: true });
  });
  await runAll(page);

  // The model at work (2.5 s a turn): the live line says so, with its pulse.
  await page.waitForSelector(`${LIVE}[data-kind="model"] .jd-live-pulse`, { timeout: 120000 });
  summary.modelWorking = await page.$eval(`${LIVE} .jd-live-now`, n => n.textContent);
  await page.locator(LIVE).scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(spec.artifacts, 'live-model-working.png') });

  // The command runs: its name on the live line, its first lines below it.
  await page.waitForFunction(
    sel => (document.querySelector(`${sel} .jd-live-tail`)?.textContent || '').includes('counted line 4'),
    LIVE,
    { timeout: 60000 }
  );
  summary.subject = await page.$eval(`${LIVE} .jd-live-now code`, n => n.textContent);
  await page.waitForTimeout(700); // the last telling of the tail (every 0.5 s) has landed
  // The clock in the command's silent spell: it moves on 2 s with no frame from the kernel.
  const read = () =>
    page.$eval(LIVE, n => ({
      clock: n.querySelector('.jd-live-clock').textContent,
      now: n.querySelector('.jd-live-now').textContent,
      tail: n.querySelector('.jd-live-tail').textContent
    }));
  const first = await read();
  const framesBefore = frames;
  const startedAt = Date.now();
  await page
    .waitForFunction(
      ([sel, from]) => {
        const clock = document.querySelector(`${sel} .jd-live-clock`).textContent.trim();
        const m = /^(?:(\d+)m )?(\d+)s$/.exec(clock); // as seconds() above
        return m && Number(m[1] || 0) * 60 + Number(m[2]) >= from + 2;
      },
      [LIVE, seconds(first.clock)],
      { timeout: 4000, polling: 100 }
    )
    .catch(() => {}); // the summary shows how far it got
  const later = await read();
  summary.ticks = {
    first: first.clock,
    later: later.clock,
    first_s: seconds(first.clock),
    later_s: seconds(later.clock),
    now: later.now,
    frames: frames - framesBefore,
    waited_ms: Date.now() - startedAt
  };
  summary.tailWhileRunning = later.tail;
  check(later.now.startsWith('now: running'), `the command ended too soon: ${JSON.stringify(summary.ticks)}`);
  // As the task spends, the sidebar shows the cost the live view shows.
  await page.waitForFunction(
    () => {
      const view = document.querySelector('.jp-Notebook .jupyter-widgets .jd-header .jd-meta');
      const side = document.querySelector('#jupyter-delegate-sidebar .jd-sidebar-task .jd-cost');
      const c = t => (/~?\$\d+\.\d+/.exec(t || '') || [''])[0];
      return view && side && c(view.textContent) === c(side.textContent) && c(side.textContent) !== '$0.0000';
    },
    null,
    { timeout: 10000 }
  ).catch(() => undefined);
  const during = await costs(page);
  summary.runningCosts = { view: cost(during.view), sidebar: cost(during.sidebar) };
  await page.locator(LIVE).scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(spec.artifacts, 'live-running-light.png') });
  await setTheme(page, 'JupyterLab Dark');
  summary.themes.push('dark');
  await page.locator(LIVE).scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(spec.artifacts, 'live-running-dark.png') });
  await setTheme(page, 'JupyterLab Light');
  summary.themes.push('light');

  // Review: the view, the folded card and the sidebar say the same cost.
  await page.waitForSelector('#jupyter-delegate-sidebar .jd-sidebar-task[data-state="review"]', {
    timeout: 120000
  });
  await page.waitForSelector('.jp-Notebook .jd-card[data-state="review"]', { timeout: 30000 });
  await page.waitForTimeout(1000);
  const atReview = await costs(page);
  summary.reviewCosts = Object.fromEntries(Object.entries(atReview).map(([k, v]) => [k, cost(v)]));
  summary.reviewLine = await page.$eval(LIVE, n => n.textContent);
  await page.locator('.jp-Notebook .jd-card').scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(spec.artifacts, 'live-review-costs.png') });
  await page.locator('.jp-Notebook .jupyter-widgets .jd-header').scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(spec.artifacts, 'live-review-header.png') });
  summary.early = await page.evaluate(() => ({
    ...window.__jdEarly,
    left: document.querySelectorAll('.jp-Notebook .jd-early').length
  }));
  // Saved: pytest reads the file (no early header kept).
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+s');
  await page.waitForTimeout(1500);
} catch (error) {
  await page.screenshot({ path: join(spec.artifacts, 'live-failure.png') }).catch(() => undefined);
  summary.trace = await page.evaluate(() => window.__jdLive).catch(() => undefined);
  console.error(JSON.stringify(summary));
  throw error;
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
