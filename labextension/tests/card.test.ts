import fixture from './fixtures/merged-record.json';
import { describe, expect, it, vi } from 'vitest';

import { liveWidgetBeside, renderCard, renderSidebar } from '../src/card';
import { cardModel, parseRecord, sidebarModel, MIME } from '../src/model';

const merged: any = fixture;

describe('renderCard', () => {
  it('shows the state badge, commits, diffstat, checks, summary, cost and model', () => {
    const node = renderCard(document, cardModel(parseRecord(merged)!));
    expect(node.dataset.state).toBe('merged');
    expect(node.querySelector('.jd-badge')!.textContent).toBe('merged');
    const text = node.textContent!;
    expect(text).toContain(merged.branch);
    expect(text).toContain(merged.base_commit.slice(0, 10));
    expect(text).toContain(merged.head_commit.slice(0, 10));
    expect(text).toContain('shop/cart.py');
    expect(node.querySelector('.jd-pass')!.textContent).toContain('PASS');
    expect(text).toContain(merged.summary);
    expect(text).toContain('$0.0144');
    expect(node.querySelector('.jd-model')!.textContent).toBe('claude-sonnet-4-6');
    expect(text).toContain(merged.journal_head.slice(0, 12));
    expect(node.classList.contains('jd-folded')).toBe(false);
  });

  it('says beside the badge why a task in review is not proven, and nothing when it is', () => {
    const failing = { ...merged, state: 'review', verdict: 'checks fail' };
    const node = renderCard(document, cardModel(parseRecord(failing)!));
    expect(node.querySelector('.jd-badge')!.textContent).toBe('review');
    expect(node.querySelector('.jd-verdict')!.textContent).toBe('checks fail');
    const proven = { ...merged, state: 'review', verdict: 'proven' };
    expect(renderCard(document, cardModel(parseRecord(proven)!)).querySelector('.jd-verdict'))
      .toBeNull();
    expect(renderCard(document, cardModel(parseRecord(merged)!)).querySelector('.jd-verdict'))
      .toBeNull();
  });

  it('names who decided, as text', () => {
    const decisions = ['allowed bash by alice via the Jupyter server', 'approved by <b>bob</b> via cli'];
    const node = renderCard(document, cardModel(parseRecord({ ...merged, decisions })!));
    const shown = [...node.querySelectorAll('.jd-decision')];
    expect(shown.map(d => d.textContent)).toEqual(decisions);
    expect(node.querySelectorAll('.jd-decision *').length).toBe(0);
    expect(renderCard(document, cardModel(parseRecord(merged)!)).querySelector('.jd-decision')).toBeNull();
  });

  it('marks a failing check FAIL', () => {
    const checks = [{ ...merged.checks[0], passed: false, exit_code: 2 }];
    const node = renderCard(document, cardModel(parseRecord({ ...merged, checks })!));
    expect(node.querySelector('.jd-fail')!.textContent).toContain('FAIL');
    expect(node.querySelector('.jd-fail')!.textContent).toContain('exit 2');
  });

  it("shows a failing check's last lines, as text, and how to see all of it", () => {
    const tail = 'E       assert 3 == 5\n<img src=x onerror=alert(1)>\n1 failed, 2 passed in 0.1s';
    const checks = [
      {
        ...merged.checks[0],
        passed: false,
        exit_code: 1,
        failure_tail: tail,
        hint: '`<b>humanize</b>` is not importable in the checks\' environment'
      },
      { ...merged.checks[0], command: 'ruff check .' }
    ];
    const node = renderCard(document, cardModel(parseRecord({ ...merged, checks })!));
    const failing = node.querySelector('.jd-fail')!;
    expect(failing.querySelector('.jd-check-tail')!.textContent).toBe(tail);
    expect(failing.querySelector('.jd-check-hint')!.textContent).toBe(
      "`<b>humanize</b>` is not importable in the checks' environment"
    );
    expect(node.querySelector('img')).toBeNull();
    expect(node.querySelector('b')).toBeNull();
    expect(failing.querySelector('.jd-see-all')!.textContent).toBe(
      `all of its output: %delegate checks ${merged.id} 1`
    );
    const passing = node.querySelector('.jd-pass')!;
    expect(passing.querySelector('.jd-check-tail')).toBeNull();
    expect(passing.querySelector('.jd-see-all')).toBeNull();
    expect(passing.querySelector('.jd-check-hint')).toBeNull();
    // a failing check that printed nothing (or an older record): no tail, still the way to all
    const quiet = [{ ...merged.checks[0], passed: false, exit_code: 1, failure_tail: '' }];
    const bare = renderCard(document, cardModel(parseRecord({ ...merged, checks: quiet })!));
    expect(bare.querySelector('.jd-check-tail')).toBeNull();
    expect(bare.querySelector('.jd-see-all')!.textContent).toContain('%delegate checks');
  });

  it('says what the checks ran with, as text', () => {
    const ranWith = [
      'checks ran with: .venv (read-only), src/humanize/_version.py (copied)',
      'variables passed: LANG, PATH, <b>PYTHONPATH</b>',
      'withheld as credentials: DEPLOY_TOKEN'
    ];
    const node = renderCard(document, cardModel(parseRecord({ ...merged, ran_with: ranWith })!));
    const lines = [...node.querySelectorAll('.jd-ran-with')].map(e => e.textContent);
    expect(lines).toEqual(ranWith);
    expect(node.querySelector('b')).toBeNull();
    // an older record without it shows none
    expect(renderCard(document, cardModel(parseRecord(merged)!)).querySelector('.jd-ran-with')).toBeNull();
  });

  it('lists the skills the agent used and the preferences in force', () => {
    const record = {
      ...merged,
      skills_used: ['test-first', 'careful-refactor'],
      preferences: ['Use pathlib, not os.path.', '<i>Short names.</i>']
    };
    const node = renderCard(document, cardModel(parseRecord(record)!));
    expect(node.textContent).toContain('skills used');
    expect(node.textContent).toContain('test-first, careful-refactor');
    const prefs = [...node.querySelectorAll('.jd-preferences li')].map(li => li.textContent);
    expect(prefs).toEqual(['Use pathlib, not os.path.', '<i>Short names.</i>']);
    expect(node.querySelector('i')).toBeNull();
    expect(node.textContent).toContain('2 in force');
    const cut = renderCard(document, cardModel(parseRecord({ ...record, preferences_count: 9 })!));
    expect(cut.textContent).toContain('9 in force (7 not listed)');
    // an older record without them shows neither row
    const plain = renderCard(document, cardModel(parseRecord(merged)!));
    expect(plain.textContent).not.toContain('skills used');
    expect(plain.querySelector('.jd-preferences')).toBeNull();
  });

  it('folds to its header line', () => {
    const node = renderCard(document, cardModel(parseRecord(merged)!), true);
    expect(node.classList.contains('jd-folded')).toBe(true);
    expect(node.querySelector('.jd-card-header')!.textContent).toContain('fix-discount');
  });

  it('never parses record text as HTML (untrusted notebooks)', () => {
    const evil = { ...merged, summary: '<img src=x onerror=alert(1)>', name: '<b>x</b>' };
    const node = renderCard(document, cardModel(parseRecord(evil)!));
    expect(node.querySelector('img')).toBeNull();
    expect(node.querySelector('b')).toBeNull();
    expect(node.textContent).toContain('<img src=x onerror=alert(1)>');
  });
});

describe('liveWidgetBeside', () => {
  function area(widgetHtml: string): { area: HTMLElement; own: HTMLElement } {
    const root = document.createElement('div');
    root.className = 'jp-OutputArea';
    root.innerHTML =
      `<div class="jp-OutputArea-child"><div class="jp-OutputArea-output">${widgetHtml}</div></div>` +
      '<div class="jp-OutputArea-child" id="own"><div class="jd-record"></div></div>';
    return { area: root, own: root.querySelector('#own') as HTMLElement };
  }

  it('folds beside a rendered widget view', () => {
    const { area: a, own } = area('<div class="jupyter-widgets"><div class="widget-vbox"></div></div>');
    expect(liveWidgetBeside(a, own)).toBe(true);
  });

  it('does not fold beside a widget that could not be shown (no kernel, no state)', () => {
    const { area: a, own } = area(
      '<div class="jupyter-widgets">Error displaying widget: model not found</div>'
    );
    expect(liveWidgetBeside(a, own)).toBe(false);
    expect(liveWidgetBeside(area('<pre>text</pre>').area, own)).toBe(false);
  });
});

describe('renderSidebar', () => {
  it('lists tasks with badges and cost, counts, and scrolls on click', () => {
    const rec = (id: string, state: string) => ({
      data: { [MIME]: { ...merged, id, name: `task-${id}`, state } }
    });
    const model = sidebarModel([[rec('a', 'running')], [], [rec('b', 'review')]]);
    const onSelect = vi.fn();
    const node = renderSidebar(document, model, onSelect);
    const items = node.querySelectorAll<HTMLElement>('.jd-sidebar-task');
    expect([...items].map(i => i.dataset.state)).toEqual(['running', 'review']);
    expect(items[1].querySelector('.jd-badge')!.textContent).toBe('review');
    expect(items[1].querySelector('.jd-cost')!.textContent).toBe('$0.0144');
    expect(node.querySelector('.jd-count-running')!.textContent).toBe('1 running');
    expect(node.querySelector('.jd-count-review')!.textContent).toBe('1 awaiting review');
    items[1].click();
    expect(onSelect).toHaveBeenCalledWith(2);
  });

  it('says beside the badge why a task in review is not proven, as the card does', () => {
    const rec = (id: string, state: string, verdict: string) => ({
      data: { [MIME]: { ...merged, id, name: `task-${id}`, state, verdict } }
    });
    const model = sidebarModel([
      [rec('a', 'review', 'checks fail')],
      [rec('b', 'review', 'proven')],
      [rec('c', 'merged', 'checks fail')]
    ]);
    const items = [...renderSidebar(document, model, () => undefined).querySelectorAll<HTMLElement>('.jd-sidebar-task')];
    expect(items.map(i => i.querySelector('.jd-verdict')?.textContent ?? '')).toEqual([
      'checks fail',
      '',
      ''
    ]);
    expect(items[0].dataset.verdict).toBe('checks fail');
  });

  it('says so when the notebook has no task', () => {
    const node = renderSidebar(document, sidebarModel([[]]), () => undefined);
    expect(node.querySelector('.jd-empty')!.textContent).toContain('No delegated tasks');
  });
});
