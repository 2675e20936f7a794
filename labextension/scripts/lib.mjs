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

export async function runAll(page) {
  // Run All Cells once the kernel is idle; on a loaded machine a click made while the
  // kernel is still connecting can run nothing, so it is made again until a cell starts.
  const idle = () => {
    const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
    return status && status.getAttribute('data-status') === 'idle';
  };
  const started = () =>
    [...document.querySelectorAll('.jp-Notebook .jp-InputArea-prompt')].some(p =>
      /\[(\*|\d+)\]/.test(p.textContent || '')
    );
  for (let attempt = 0; attempt < 3; attempt++) {
    await page.waitForFunction(idle, null, { timeout: 60000 }).catch(() => undefined);
    await page.locator('.lm-MenuBar-item', { hasText: /^Run$/ }).click();
    await page.getByRole('menuitem', { name: 'Run All Cells', exact: true }).click();
    if (await page.waitForFunction(started, null, { timeout: 20000 }).then(() => true, () => false)) {
      return;
    }
  }
  throw new Error('Run All Cells started no cell');
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
