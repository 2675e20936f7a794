// What the browser tests share (each script in this folder is one test, run by a pytest
// test through tests/browser.py with a JSON spec): expectations, the kernel dialog, Run All
// Cells, the Delegations sidebar, the theme, and Chromium launched headless from Debian.
import { chromium } from 'playwright-core';

export function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

export async function dismissKernelDialog(page, wait = 20000) {
  // A notebook without a kernelspec asks which kernel to start: choose none. On a loaded
  // machine the dialog can take well over 5 s to appear (it then blocked every click).
  const dialog = page.locator('.jp-Dialog');
  try {
    await dialog.waitFor({ state: 'visible', timeout: wait });
  } catch {
    return;
  }
  for (const label of ['No Kernel', 'Cancel']) {
    const button = dialog.locator('button', { hasText: label });
    if (await button.count()) {
      await button.first().click();
      await dialog.waitFor({ state: 'detached', timeout: 5000 });
      return;
    }
  }
}

export async function acceptKernel(page) {
  // On a loaded machine JupyterLab can ask which kernel to start for a notebook that names
  // one (it did not find it running in time): take the one it offers, the notebook's own.
  const dialog = page.locator('.jp-Dialog');
  if (!(await dialog.isVisible().catch(() => false))) {
    return;
  }
  const select = dialog.locator('button', { hasText: /^Select$/ });
  if (await select.count()) {
    await select.first().click();
    await dialog.waitFor({ state: 'detached', timeout: 10000 }).catch(() => undefined);
  }
}

export async function answerDialog(page) {
  // A JupyterLab dialog in the way of a click: the kernel choice takes the notebook's own
  // kernel; any other (a kernel restarting or a lost server connection on a loaded
  // machine) is written to stderr, so a failure says what it was, and accepted. Its text.
  const dialog = page.locator('.jp-Dialog');
  if (!(await dialog.isVisible().catch(() => false))) {
    return '';
  }
  const text = ((await dialog.textContent().catch(() => '')) || '').replace(/\s+/g, ' ').trim();
  console.error(`a JupyterLab dialog was in the way: ${text}`);
  if (await dialog.locator('button', { hasText: /^Select$/ }).count()) {
    await acceptKernel(page);
  } else {
    await dialog.locator('button.jp-mod-accept').first().click({ timeout: 5000 }).catch(() => undefined);
    await dialog.waitFor({ state: 'detached', timeout: 10000 }).catch(() => undefined);
  }
  return text;
}

export async function runAll(page) {
  // Run All Cells once the kernel is idle; on a loaded machine a click made while the
  // kernel is still connecting can run nothing, so it is made again until a cell starts.
  // A dialog met on the way is answered (answerDialog).
  const idle = () => {
    const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
    return status && status.getAttribute('data-status') === 'idle';
  };
  const started = () =>
    [...document.querySelectorAll('.jp-Notebook .jp-InputArea-prompt')].some(p =>
      /\[(\*|\d+)\]/.test(p.textContent || '')
    );
  for (let attempt = 0; attempt < 3; attempt++) {
    for (let waited = 0; waited < 60000; waited += 500) {
      await acceptKernel(page);
      if (await page.evaluate(idle)) {
        break;
      }
      await page.waitForTimeout(500);
    }
    await answerDialog(page);
    try {
      await page.locator('.lm-MenuBar-item', { hasText: /^Run$/ }).click({ timeout: 15000 });
      await page.getByRole('menuitem', { name: 'Run All Cells', exact: true }).click({ timeout: 15000 });
    } catch (error) {
      // a dialog that came up in between: say which, answer it, and try again
      const text = await answerDialog(page);
      if (!text || attempt === 2) throw new Error(`Run All Cells could not be clicked (dialog: ${text}): ${error}`);
      if (await page.evaluate(started)) {
        await runTheRest(page); // the first click ran some: the rest, none twice
        return;
      }
      continue;
    }
    if (await page.waitForFunction(started, null, { timeout: 20000 }).then(() => true, () => false)) {
      await runTheRest(page);
      return;
    }
  }
  throw new Error('Run All Cells started no cell');
}

async function runTheRest(page) {
  // On a loaded machine Run All can stop after the first cell with no error (the rest
  // never queued: their prompts stay empty while the kernel is idle). Then the cells left
  // are run, from the first of them (Run Selected Cell and All Below): none runs twice.
  const firstLeft = () => {
    const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
    if (cells.some(c => c.querySelector('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))) {
      return -2; // a cell failed: Run All stopped there on purpose
    }
    const left = cells.findIndex(c => /\[\s*\]/.test(c.querySelector('.jp-InputPrompt')?.textContent || ''));
    if (left < 0) return -2; // every cell ran or is queued: nothing to do
    const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
    return status && status.getAttribute('data-status') === 'idle' ? left : -1; // -1: wait
  };
  for (let waited = 0; waited < 30000; waited += 1000) {
    await page.waitForTimeout(waited ? 1000 : 300);
    const left = await page.evaluate(firstLeft);
    if (left === -2) return;
    if (left < 0) continue;
    console.error(`Run All stopped before cell ${left + 1}: running it and the cells below`);
    await page.locator('.jp-Notebook .jp-CodeCell').nth(left).locator('.jp-InputPrompt').click();
    await answerDialog(page);
    await page.locator('.lm-MenuBar-item', { hasText: /^Run$/ }).click({ timeout: 15000 });
    await page
      .getByRole('menuitem', { name: 'Run Selected Cell and All Below', exact: true })
      .click({ timeout: 15000 });
    return;
  }
}

export async function openSidebar(page) {
  const panel = page.locator('#jupyter-delegate-sidebar');
  if (!(await panel.isVisible())) {
    await page.locator('.jp-SideBar [data-id="jupyter-delegate-sidebar"]').click();
  }
  await panel.waitFor({ state: 'visible', timeout: 10000 });
}

export async function setTheme(page, name) {
  // Settings > Theme > NAME, then wait until the body says the theme is on.
  const light = !name.includes('Dark');
  if ((await page.evaluate(() => document.body.dataset.jpThemeLight)) === String(light)) {
    return;
  }
  await page.locator('.lm-MenuBar-item', { hasText: /^Settings$/ }).click();
  const item = label => page.locator('.lm-Menu-itemLabel', { hasText: new RegExp(`^${label}$`) });
  await item('Theme').click(); // opens the submenu
  await item(name).click();
  await page.waitForFunction(l => document.body.dataset.jpThemeLight === String(l), light, {
    timeout: 20000
  });
  await page.waitForTimeout(500); // the theme's stylesheet settles
}

export async function sidebarTasks(page) {
  return page.$$eval('#jupyter-delegate-sidebar .jd-sidebar-task', items =>
    items.map(i => ({ id: i.dataset.taskId, state: i.dataset.state, text: i.textContent }))
  );
}


export async function launch(spec) {
  return chromium.launch({
    executablePath: spec.chromium,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync'
    ]
  });
}
