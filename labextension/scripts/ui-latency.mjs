// bench/ui_latency.py's browser half (not a test): in a real JupyterLab, the time from
// shift-enter on a cell to what it shows in the DOM, read by a MutationObserver in the page
// on the epoch clock (performance.timeOrigin + performance.now(), the machine's clock the
// bench's fake model also stamps its sends with).
//
// The warm notebook: cell 0 `%load_ext`, cell 1 the comm counter, cell 2 a warm-up
// `%%delegate`, then pairs (print('x'), `%%delegate`), then a cell printing the counts.
// The fresh notebook: `%load_ext`, `%%delegate`, run after each kernel restart.
// Prints one JSON line: each step's epoch times.
import { readFileSync } from 'node:fs';
import { acceptKernel, launch } from './lib.mjs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const browser = await launch(spec);
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });

const CELLS = '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell';

const INSTALL = () => {
  const now = () => performance.timeOrigin + performance.now();
  window.__jd = { t0: 0, marks: {} };
  window.addEventListener(
    'keydown',
    e => {
      if (e.key === 'Enter' && e.shiftKey) {
        window.__jd.t0 = now();
      }
    },
    true
  );
  window.__jd.watch = (index, wants) => {
    if (window.__jd.obs) {
      window.__jd.obs.disconnect();
    }
    const cell = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')[index];
    const marks = {};
    // Only what this run shows: after shift-enter, once the cell's old outputs are cleared
    // (a restarted kernel's cell keeps them, and its live line still ticks) and its prompt
    // has said it is running.
    window.__jd.t0 = 0;
    let cleared = false;
    let busy = false;
    const check = () => {
      const t = now();
      if (!window.__jd.t0) {
        return;
      }
      cleared = cleared || !cell.querySelector('.jp-OutputArea-output');
      busy = busy || (cell.querySelector('.jp-InputPrompt')?.textContent || '').includes('*');
      if (!cleared || !busy) {
        return;
      }
      for (const [name, want] of Object.entries(wants)) {
        if (marks[name]) {
          continue;
        }
        for (const el of cell.querySelectorAll(want.selector)) {
          if (!want.text || (el.textContent || '').includes(want.text)) {
            marks[name] = t;
            break;
          }
        }
      }
    };
    window.__jd.marks = marks;
    window.__jd.obs = new MutationObserver(check);
    window.__jd.obs.observe(cell, { childList: true, subtree: true, characterData: true });
  };
};

async function idle() {
  await page.waitForFunction(
    () => {
      const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
      return status && status.getAttribute('data-status') === 'idle';
    },
    null,
    { timeout: 120000 }
  );
}

async function open(notebook) {
  await page.goto(`${spec.base}/lab/tree/${notebook}`);
  await page.locator(CELLS).first().waitFor({ timeout: 120000 });
  for (let waited = 0; waited < 60000; waited += 500) {
    await acceptKernel(page);
    const ready = await page.evaluate(() => {
      const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
      return status && status.getAttribute('data-status') === 'idle';
    });
    if (ready) {
      break;
    }
    await page.waitForTimeout(500);
  }
  await page.evaluate(INSTALL);
}

async function select(index) {
  const cell = page.locator(CELLS).nth(index);
  await cell.locator('.jp-InputPrompt').click();
  await page.keyboard.press('Escape');
}

// Run cell `index` with shift-enter; `wants`: {name: {selector, text}} marked when they
// appear in it; waits for every mark (and `until`, a mark name, for the last); epoch times.
async function run(index, wants, timeout = 60000) {
  await select(index);
  await page.evaluate(([i, w]) => window.__jd.watch(i, w), [index, wants]);
  await page.keyboard.press('Shift+Enter');
  try {
    await page.waitForFunction(
      names => names.every(n => window.__jd.marks[n]),
      Object.keys(wants),
      { timeout }
    );
  } catch (error) {
    await page.screenshot({ path: `${spec.artifacts}/ui-latency-failure.png` });
    const marks = await page.evaluate(() => JSON.stringify(window.__jd.marks));
    throw new Error(`cell ${index}: ${JSON.stringify(wants)} not all seen (${marks}): ${error}`);
  }
  return page.evaluate(() => ({ t0: window.__jd.t0, ...window.__jd.marks }));
}

// The first cell in a kernel just connected: a shift-enter made while it still connects
// can run nothing (lib.mjs's runAll says the same), so it is made again.
async function runFirst() {
  for (let attempt = 0; ; attempt++) {
    try {
      return await run(0, { done: { selector: '.jp-InputPrompt', text: '[1]' } }, 15000);
    } catch (error) {
      if (attempt === 3) {
        throw error;
      }
    }
  }
}

const OUT = '.jp-OutputArea-output';
const delegateWants = {
  header: { selector: '.jd-header' },
  text: { selector: OUT, text: spec.marker },
  review: { selector: '.jd-header .jd-badge', text: 'review' }
};

const result = { warm: [], print: [], fresh: [], counts: null };
await open(spec.warm);
await runFirst();
await idle();
await run(1, { done: { selector: '.jp-InputPrompt', text: '[2]' } });
await idle();
await run(2, delegateWants); // warm-up: the first task of the kernel
await idle();
for (let rep = 0; rep < spec.reps; rep++) {
  const base = 3 + 2 * rep;
  result.print.push(await run(base, { out: { selector: OUT, text: 'x' } }));
  await idle();
  result.warm.push(await run(base + 1, delegateWants));
  await idle();
  await page.waitForTimeout(300); // the review's widgets, built on their own thread
}
const last = 3 + 2 * spec.reps;
await run(last, { out: { selector: OUT, text: 'JDCOUNT' } }, 120000);
result.counts = JSON.parse(
  (await page.locator(CELLS).nth(last).locator(OUT).last().textContent())
    .split('JDCOUNT')[1]
    .trim()
);

await open(spec.fresh);
for (let rep = 0; rep < spec.freshReps; rep++) {
  if (rep > 0) {
    await page.locator('.lm-MenuBar-item', { hasText: /^Kernel$/ }).click();
    await page.getByRole('menuitem', { name: /^Restart Kernel…/ }).first().click();
    const dialog = page.locator('.jp-Dialog');
    await dialog.locator('button', { hasText: /^Restart$/ }).click();
    await dialog.waitFor({ state: 'detached', timeout: 20000 });
    await page.waitForTimeout(1000);
    await idle();
  }
  const loaded = await runFirst();
  await idle();
  const first = await run(1, delegateWants);
  await idle();
  result.fresh.push({ ...first, loadExt: loaded.done - loaded.t0 });
}
await browser.close();
console.log(JSON.stringify(result));
