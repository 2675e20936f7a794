/**
 * The task card and the sidebar list as plain DOM, built with textContent only (the card
 * renders in untrusted notebooks: nothing from the record is parsed as HTML). No
 * JupyterLab import: tested with vitest and jsdom.
 */

import { CardModel, SidebarModel } from './model';

type Attrs = { class?: string; title?: string; [key: string]: string | undefined };

function el(
  doc: Document,
  tag: string,
  attrs: Attrs = {},
  ...children: (Node | string | null)[]
): HTMLElement {
  const node = doc.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined) {
      node.setAttribute(key, value);
    }
  }
  for (const child of children) {
    if (child !== null) {
      node.append(child);
    }
  }
  return node;
}

export function badge(doc: Document, state: string): HTMLElement {
  return el(doc, 'span', { class: `jd-badge jd-state-${state}`, 'data-state': state }, state);
}

function row(doc: Document, label: string, ...value: (Node | string | null)[]): HTMLElement {
  return el(doc, 'div', { class: 'jd-row' }, el(doc, 'span', { class: 'jd-key' }, label), ...value);
}

function code(doc: Document, text: string, title?: string): HTMLElement {
  return el(doc, 'code', { title }, text);
}

/** The full card; `folded` shows only its one-line header (the live view is beside it). */
export function renderCard(doc: Document, card: CardModel, folded = false): HTMLElement {
  const header = el(
    doc,
    'div',
    { class: 'jd-card-header', title: folded ? 'Show the task record' : 'Fold the task record' },
    el(doc, 'span', { class: 'jd-fold' }, folded ? '▸' : '▾'),
    el(doc, 'span', { class: 'jd-label' }, card.label),
    badge(doc, card.state),
    card.verdict ? el(doc, 'span', { class: 'jd-verdict' }, card.verdict) : null,
    el(doc, 'span', { class: 'jd-cost' }, card.cost),
    card.checks.length
      ? el(
          doc,
          'span',
          { class: 'jd-checks-count' },
          `checks ${card.checksPassed}/${card.checks.length}`
        )
      : null,
    el(doc, 'code', { class: 'jd-id' }, card.id)
  );
  const body = el(doc, 'div', { class: 'jd-card-body' });
  body.append(el(doc, 'div', { class: 'jd-goal' }, card.goal));
  body.append(
    row(
      doc,
      'branch',
      code(doc, card.branch),
      ' from ',
      code(doc, card.baseBranch || 'base'),
      ' @ ',
      code(doc, card.base)
    )
  );
  if (card.head) {
    body.append(
      row(
        doc,
        'head',
        code(doc, card.head),
        card.merged ? ' merged as ' : null,
        card.merged ? code(doc, card.merged) : null
      )
    );
  }
  if (card.files.length) {
    const files = el(doc, 'ul', { class: 'jd-diffstat' });
    for (const f of card.files) {
      files.append(
        el(
          doc,
          'li',
          {},
          code(doc, f.file),
          ' ',
          el(doc, 'span', { class: 'jd-added' }, f.added),
          ' ',
          el(doc, 'span', { class: 'jd-removed' }, f.removed)
        )
      );
    }
    const more = card.filesTotal - card.files.length;
    body.append(
      row(
        doc,
        'diff',
        `${card.filesTotal} file${card.filesTotal === 1 ? '' : 's'}, +${card.added} −${card.removed}` +
          (more > 0 ? ` (${more} more not listed)` : '')
      ),
      files
    );
  }
  if (card.checks.length) {
    const checks = el(doc, 'ul', { class: 'jd-checks' });
    for (const c of card.checks) {
      checks.append(
        el(
          doc,
          'li',
          { class: c.passed ? 'jd-pass' : 'jd-fail' },
          el(doc, 'span', { class: 'jd-check-mark' }, c.passed ? 'PASS' : 'FAIL'),
          ' ',
          code(doc, c.command),
          ' ',
          el(doc, 'span', { class: 'jd-dim' }, c.detail),
          c.tail ? el(doc, 'pre', { class: 'jd-check-tail' }, c.tail) : null,
          c.hint ? el(doc, 'div', { class: 'jd-check-hint' }, c.hint) : null,
          c.seeAll
            ? el(
                doc,
                'div',
                { class: 'jd-see-all jd-dim' },
                'all of its output: ',
                code(doc, c.seeAll)
              )
            : null
        )
      );
    }
    body.append(row(doc, 'checks', `${card.checksPassed}/${card.checks.length} passed`), checks);
    for (const line of card.ranWith) {
      body.append(el(doc, 'div', { class: 'jd-ran-with jd-dim' }, line));
    }
  }
  if (card.summary) {
    body.append(el(doc, 'div', { class: 'jd-summary' }, card.summary));
  }
  if (card.error) {
    body.append(el(doc, 'div', { class: 'jd-error' }, card.error));
  }
  for (const flag of card.flags) {
    body.append(el(doc, 'div', { class: 'jd-flag' }, flag));
  }
  for (const decision of card.decisions) {
    body.append(el(doc, 'div', { class: 'jd-decision jd-dim' }, decision));
  }
  if (card.skillsUsed) {
    body.append(row(doc, 'skills used', card.skillsUsed));
  }
  if (card.preferences.length) {
    const prefs = el(doc, 'ul', { class: 'jd-preferences' });
    for (const p of card.preferences) {
      prefs.append(el(doc, 'li', {}, p));
    }
    const more = card.preferencesTotal - card.preferences.length;
    const count = `${card.preferencesTotal} in force` + (more > 0 ? ` (${more} not listed)` : '');
    body.append(row(doc, 'preferences', count), prefs);
  }
  body.append(
    row(
      doc,
      'cost',
      `${card.cost} · ${card.steps} steps · `,
      el(doc, 'span', { class: 'jd-model' }, card.servedModel)
    )
  );
  if (card.journalHead) {
    body.append(row(doc, 'journal', code(doc, card.journalHead)));
  }
  const node = el(
    doc,
    'div',
    {
      class: `jd-card${folded ? ' jd-folded' : ''}`,
      'data-task-id': card.id,
      'data-state': card.state
    },
    header,
    body
  );
  return node;
}

/** The sidebar's content; `onSelect` gets the cell index of the clicked task. */
export function renderSidebar(
  doc: Document,
  model: SidebarModel,
  onSelect: (cellIndex: number) => void
): HTMLElement {
  const summary = el(
    doc,
    'div',
    { class: 'jd-sidebar-counts' },
    el(doc, 'span', { class: 'jd-count-running' }, `${model.running} running`),
    ' · ',
    el(doc, 'span', { class: 'jd-count-review' }, `${model.review} awaiting review`),
    ' · ',
    el(doc, 'span', { class: 'jd-count-cost' }, model.totalCost)
  );
  const items = el(doc, 'ul', { class: 'jd-sidebar-tasks' });
  for (const task of model.tasks) {
    const item = el(
      doc,
      'li',
      {
        class: 'jd-sidebar-task',
        'data-task-id': task.id,
        'data-state': task.state,
        'data-verdict': task.verdict,
        title: `Go to the cell of ${task.label}`
      },
      el(doc, 'span', { class: 'jd-label' }, task.label),
      badge(doc, task.state),
      task.verdict ? el(doc, 'span', { class: 'jd-verdict' }, task.verdict) : null,
      el(doc, 'span', { class: 'jd-cost' }, task.cost)
    );
    item.addEventListener('click', () => onSelect(task.cellIndex));
    items.append(item);
  }
  const empty = model.tasks.length
    ? null
    : el(doc, 'div', { class: 'jd-empty' }, 'No delegated tasks in this notebook.');
  return el(doc, 'div', { class: 'jd-sidebar-content' }, summary, items, empty);
}

/**
 * True when an output area shows a live ipywidgets view beside `own` (the card's output):
 * a `.jupyter-widgets` node that rendered a view, not the "Error displaying widget" text
 * a saved notebook without widget state or kernel shows.
 */
export function liveWidgetBeside(area: Element, own: Element | null): boolean {
  for (const node of Array.from(area.querySelectorAll('.jupyter-widgets'))) {
    if (own && (own.contains(node) || node.contains(own))) {
      continue;
    }
    const text = (node.textContent || '').trim();
    if (text.startsWith('Error displaying widget')) {
      continue;
    }
    if (node.children.length > 0 || text.length > 0) {
      return true;
    }
  }
  return false;
}
