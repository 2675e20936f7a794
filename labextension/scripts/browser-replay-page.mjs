// The offline replay page (jupyter_delegate/replay_page.py) opened from file:// with no
// server. Run by tests/test_replay_page.py: node scripts/browser-replay-page.mjs SPEC.json,
// where SPEC is {"page": absolute path of the HTML file, "chromium", "artifacts",
// "screenshots": {"light": PATH, "dark": PATH} (optional), "probe": [step indexes],
// "schemes": ["light", "dark"] (default both), "sweep": redraws timed (default 50)}.
// It records every request the page makes (none may leave file://), moves the slider, clicks
// the step list, presses keys, and reads what the detail pane shows at each step.
// Prints a JSON summary as its last line.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { check, launch } from './lib.mjs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const url = pathToFileURL(spec.page).href;
const summary = { requests: [], errors: [], steps: {} };

// What the page shows for the current step (once its diff is drawn: a diff waits while
// the steps go by quickly).
async function shown(page) {
  await page.waitForFunction(() => {
    const root = document.querySelector('.jdp');
    return root.dataset.diffStep === root.dataset.step;
  }, null, { timeout: 10000 });
  return page.evaluate(() => {
    const q = s => document.querySelector(s);
    const text = s => (q(s) ? q(s).textContent : null);
    return {
      step: Number(q('.jdp').dataset.step),
      slider: Number(q('.jdp-slider').value),
      position: text('.jdp-position'),
      selected: [...document.querySelectorAll('.jdp-step.jdp-on')].map(e => Number(e.dataset.index)),
      cost: text('.jdp-cost-now'),
      words: text('.jdp-words'),
      tool: text('.jdp-tool'),
      result: text('.jdp-result'),
      badges: [...document.querySelectorAll('.jdp-result .jdp-badge')].map(b => b.textContent),
      permissions: text('.jdp-perms'),
      compaction: text('.jdp-compaction'),
      notes: [...document.querySelectorAll('.jdp-note')].map(n => n.textContent),
      files: text('.jdp-files'),
      diffFiles: [...document.querySelectorAll('.d2h-file-name')].map(n => n.textContent.trim()),
      added: [...document.querySelectorAll('.d2h-ins .d2h-code-line-ctn')].map(n => n.textContent),
      diffEmpty: text('.jdp-diff-empty')
    };
  });
}

async function settle(page) {
  await page.evaluate(() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))));
}

const browser = await launch(spec);
try {
  for (const scheme of spec.schemes || ['light', 'dark']) {
    const context = await browser.newContext({
      colorScheme: scheme,
      viewport: { width: 1280, height: 900 },
      deviceScaleFactor: 1
    });
    const page = await context.newPage();
    page.on('request', r => summary.requests.push(r.url()));
    page.on('pageerror', e => summary.errors.push(String(e)));
    page.on('console', m => m.type() === 'error' && summary.errors.push(m.text()));
    const opened = Date.now();
    await page.goto(url);
    await page.locator('.jdp-step').first().waitFor({ timeout: 10000 });
    summary[`${scheme}_open_ms`] = Date.now() - opened;
    // from the navigation's start to the replay drawn, as the page measured it
    summary[`${scheme}_drawn_ms`] = await page.evaluate(
      () => performance.getEntriesByName('jd-replay-drawn')[0].startTime
    );
    summary[`${scheme}_background`] = await page.evaluate(
      () => getComputedStyle(document.querySelector('.jdp')).backgroundColor
    );
    if (scheme === 'light') {
      summary.pwned = await page.evaluate(() => window.pwned === 1);
      summary.count = await page.locator('.jdp-step').count();
      summary.first = await shown(page);
      // the slider: set it where a test asks, as a drag would (input events)
      for (const index of spec.probe || []) {
        await page.locator('.jdp-slider').evaluate((el, i) => {
          el.value = String(i);
          el.dispatchEvent(new Event('input', { bubbles: true }));
        }, index);
        await settle(page);
        summary.steps[`slider-${index}`] = await shown(page);
      }
      // a real drag of the slider's thumb to the far right: the last step
      const box = await page.locator('.jdp-slider').boundingBox();
      await page.mouse.click(box.x + box.width - 2, box.y + box.height / 2);
      await settle(page);
      summary.dragged = await shown(page);
      // a click in the step list
      const target = Math.min(3, summary.count - 1);
      await page.locator(`.jdp-step[data-index="${target}"]`).click();
      await settle(page);
      summary.clicked = await shown(page);
      // keys: j forward, k back, ArrowRight forward, End, Home
      await page.keyboard.press('j');
      await settle(page);
      summary.afterJ = (await shown(page)).step;
      await page.keyboard.press('k');
      await page.keyboard.press('k');
      await settle(page);
      summary.afterKK = (await shown(page)).step;
      await page.keyboard.press('ArrowRight');
      await settle(page);
      summary.afterRight = (await shown(page)).step;
      await page.keyboard.press('End');
      await settle(page);
      summary.afterEnd = await shown(page);
      // time a sweep over every step, one redraw each
      const sweep = await page.evaluate(async count => {
        const slider = document.querySelector('.jdp-slider');
        const n = Number(slider.max) + 1;
        const stride = Math.max(1, Math.floor(n / count));
        const started = performance.now();
        let redraws = 0;
        for (let i = 0; i < n; i += stride, redraws++) {
          slider.value = String(i);
          slider.dispatchEvent(new Event('input', { bubbles: true }));
          await new Promise(r => requestAnimationFrame(r));
        }
        return { redraws, ms: performance.now() - started };
      }, spec.sweep || 50);
      summary.sweep = sweep;
      await page.locator(`.jdp-step[data-index="${spec.screenshot_step ?? 1}"]`).click();
      await settle(page);
      const thinking = page.locator('.jdp-thinking summary');
      if (await thinking.count()) await thinking.first().click(); // unfolded in the screenshot
    } else {
      await page.locator(`.jdp-step[data-index="${spec.screenshot_step ?? 1}"]`).click();
      await settle(page);
    }
    await shown(page); // the step's diff drawn
    if (spec.screenshots && spec.screenshots[scheme]) {
      await page.screenshot({ path: spec.screenshots[scheme], fullPage: false });
    }
    await context.close();
  }
} finally {
  await browser.close();
}
check(summary.count > 0, 'the page drew no steps');
console.log(JSON.stringify(summary));
