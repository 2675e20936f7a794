// bench/ui_latency.py's browser half (not a test): in a real JupyterLab, the time from
// shift-enter on a cell to what it shows in the DOM, read by a MutationObserver in the page
// on the epoch clock (performance.timeOrigin + performance.now(), the machine's clock the
// bench's fake model also stamps its sends with).
//
// The warm notebook: cell 0 `%load_ext`, cell 1 the comm counter, cell 2 a warm-up
// `%%delegate`, then pairs (print('x'), `%%delegate`), then a cell printing the counts.
// The fresh notebook: `%load_ext`, `%%delegate`, run after each kernel restart.
// With `spec.many`, only the many phase (`many`): cell 0 `%load_ext` (and a probe), cell
// 1 `1+1`, then one `%%delegate` cell per task, the tasks streaming replies marked
// `Mk07r012`, then a cell writing the probe's stamps.
// Prints one JSON line: each step's epoch times.
import { readFileSync, writeFileSync } from 'node:fs';
import { acceptKernel, answerDialog, check, launch } from './lib.mjs';

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
// can run nothing (lib.mjs's runAll says the same), so it is made again; a dialog in the
// way (the kernel's choice, on a loaded machine) is named on stderr and answered.
async function runFirst() {
  for (let attempt = 0; ; attempt++) {
    await answerDialog(page);
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
// `header`: the first header drawn, the early one (header.py) as a rule; `live`: the live
// view's own, once its widgets are made.
const delegateWants = {
  header: { selector: '.jd-header' },
  live: { selector: '.jd-live-header .jd-header' },
  text: { selector: OUT, text: spec.marker },
  review: { selector: '.jd-header .jd-badge', text: 'review' }
};

// The warm notebook's tasks beside print('x'), then the fresh notebook's restarts.
async function classic() {
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
    // A cell first, so that `%load_ext` is timed in a kernel that has started (the
    // first cell after a restart waits for the kernel's own start: `kernelStart`).
    const started = await runFirst();
    await idle();
    const loaded = await run(1, { done: { selector: '.jp-InputPrompt', text: '[2]' } });
    await idle();
    const first = await run(2, delegateWants);
    await idle();
    result.fresh.push({
      ...first,
      kernelStart: started.done - started.t0,
      loadExt: loaded.done - loaded.t0
    });
  }
  return result;
}

// The many phase's watch over the whole notebook: when each reply's marker first shows
// (epoch ms) and in which cell; and the page's long tasks (main thread busy > 50 ms).
const INSTALL_MANY = () => {
  const now = () => performance.timeOrigin + performance.now();
  const cellsOf = '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell';
  const seen = {};
  const longtasks = [];
  window.__jdMany = { seen, longtasks };
  new PerformanceObserver(list => {
    for (const entry of list.getEntries()) {
      longtasks.push([performance.timeOrigin + entry.startTime, entry.duration]);
    }
  }).observe({ type: 'longtask', buffered: true });
  const marker = /Mk\d\dr\d{3}/g;
  const look = (node, t) => {
    // a node gone again before this callback was never on screen: its words are elsewhere
    if (!node.isConnected || !(node.textContent || '').includes('Mk')) {
      return;
    }
    for (const found of node.textContent.matchAll(marker)) {
      if (!seen[found[0]]) {
        const element = node.nodeType === 1 ? node : node.parentElement;
        const cell = element.closest('.jp-Cell');
        seen[found[0]] = { t, cell: [...document.querySelectorAll(cellsOf)].indexOf(cell) };
      }
    }
  };
  const notebook = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  new MutationObserver(records => {
    const t = now();
    for (const record of records) {
      if (record.type === 'characterData') {
        look(record.target, t);
      } else {
        record.addedNodes.forEach(node => look(node, t));
      }
    }
  }).observe(notebook, { childList: true, subtree: true, characterData: true });
};

// What a frame on the kernel's websocket carries: its message type, and for a widget's
// update the traits it sets (`update:value`); JSON or the v1 binary protocol.
function kindOf(payload) {
  try {
    let header, content;
    if (typeof payload === 'string') {
      ({ header, content } = JSON.parse(payload));
    } else {
      const count = Number(payload.readBigUInt64LE(0));
      const at = [...Array(count).keys()].map(i => Number(payload.readBigUInt64LE(8 * (i + 1))));
      header = JSON.parse(payload.subarray(at[1], at[2]).toString('utf8'));
      content = JSON.parse(payload.subarray(at[4], at[5]).toString('utf8'));
    }
    const data = content.data || {};
    if (header.msg_type === 'comm_msg' && data.method === 'update') {
      return `update:${Object.keys(data.state || {}).sort().join(',')}`;
    }
    return header.msg_type;
  } catch {
    return 'unparsed';
  }
}

const STREAM_ALONE_MS = 8000;

// `1+1` (cell 1) idle, then the tasks' cells selected together and run with one
// shift-enter; once every task's words show, `1+1` while they stream; then the stop file
// (the model finishes every task on its next turn), and once every view is in review,
// `1+1` again, and the last cell writes the kernel's stamps. Between the streaming `1+1`
// samples and the stop file, STREAM_ALONE_MS of the tasks streaming with nothing else
// done on the page. The page's frames on the kernel's websocket are counted throughout,
// its renderer's counters read at each window's ends.
async function many() {
  const { notebook, tasks, samples } = spec.many;
  const frames = [];
  page.on('websocket', ws => {
    if (ws.url().includes('/channels')) {
      // (when the page's main thread has taken it: Chromium reports the frame from there)
      ws.on('framereceived', frame =>
        frames.push([Date.now(), frame.payload.length, kindOf(frame.payload)])
      );
    }
  });
  await open(notebook);
  await page.evaluate(INSTALL_MANY);
  // The renderer's own counters (CPU time of its main thread, style and layout work), read
  // at each window's ends: the page's work, apart from how the latencies happened to fall.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  const counters = [];
  const count = async () => {
    const { metrics } = await cdp.send('Performance.getMetrics');
    counters.push({ t: Date.now(), ...Object.fromEntries(metrics.map(m => [m.name, m.value])) });
  };
  await runFirst();
  await idle();
  const one = async () => {
    const sample = await run(1, { out: { selector: OUT, text: '2' } });
    await idle();
    await page.waitForTimeout(200);
    return sample;
  };
  const result = { idle: [], busy: [], after: [] };
  await count();
  for (let n = 0; n < samples; n++) {
    result.idle.push(await one());
  }
  await count();
  await select(2);
  for (let k = 1; k < tasks; k++) {
    await page.keyboard.press('Shift+ArrowDown');
  }
  const selected = await page.locator(`${CELLS}.jp-mod-selected`).count();
  check(selected === tasks, `${selected} cells selected, not the ${tasks} tasks' cells`);
  await page.evaluate(() => {
    window.__jd.t0 = 0;
  });
  await page.keyboard.press('Shift+Enter');
  result.startT0 = await page.evaluate(() => window.__jd.t0);
  await page.waitForFunction(
    ([selector, count]) => {
      const cells = document.querySelectorAll(selector);
      for (let k = 2; k < 2 + count; k++) {
        const prompt = cells[k].querySelector('.jp-InputPrompt');
        if (!/\[\d+\]/.test(prompt?.textContent || '')) {
          return false;
        }
      }
      return true;
    },
    [CELLS, tasks],
    { timeout: 300000, polling: 100 }
  );
  result.started = await page.evaluate(() => performance.timeOrigin + performance.now());
  await page.waitForFunction(
    count => new Set(Object.keys(window.__jdMany.seen).map(m => m.slice(2, 4))).size === count,
    tasks,
    { timeout: 120000 }
  );
  const profile = async (what, during) => {
    // the page's JavaScript sampled, and the renderer's own work (style, layout, paint)
    // traced, over `during` (opt-in: it slows the page)
    if (!spec.profile) {
      return during();
    }
    const path = spec.profile.replace(/\.cpuprofile$/, `-${what}`);
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 500 });
    await cdp.send('Profiler.start');
    await browser.startTracing(page, {
      path: `${path}.trace.json`,
      categories: ['devtools.timeline', 'disabled-by-default-devtools.timeline']
    });
    await during();
    await browser.stopTracing();
    writeFileSync(`${path}.cpuprofile`, JSON.stringify((await cdp.send('Profiler.stop')).profile));
  };
  await count();
  await profile('busy', async () => {
    for (let n = 0; n < samples; n++) {
      result.busy.push(await one());
    }
  });
  await count();
  // The tasks streaming with nothing else on the page (no `1+1`, no clicks): what the
  // views alone cost the page, read by its counters.
  await count();
  await profile('alone', () => page.waitForTimeout(STREAM_ALONE_MS));
  await count();
  writeFileSync(spec.stop, '');
  await page.waitForFunction(
    count =>
      [...document.querySelectorAll('.jd-header .jd-badge')].filter(b =>
        (b.textContent || '').includes('review')
      ).length === count,
    tasks,
    { timeout: 300000, polling: 500 }
  );
  await page.waitForTimeout(3000); // the reviews' widgets, built on their own threads
  await idle();
  await count();
  for (let n = 0; n < samples; n++) {
    result.after.push(await one());
  }
  await count();
  await run(2 + tasks, { out: { selector: OUT, text: 'JDSTAMPS' } }); // the kernel's stamps
  const page_ = await page.evaluate(() => ({
    markers: window.__jdMany.seen,
    longtasks: window.__jdMany.longtasks
  }));
  return { ...result, ...page_, frames, counters };
}

const result = spec.many ? { many: await many() } : await classic();
await browser.close();
console.log(JSON.stringify(result));
