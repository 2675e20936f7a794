// The replay renderer (src/replay/replay.js) in jsdom, with each host's model: the static
// one (offline page, MIME renderer) and a widget's, whose diffs come from the kernel.
// (The MIME renderer itself, a Lumino widget, is tested in JupyterLab:
// tests/test_browser_replay.py.)
import fixture from './fixtures/replay.json';
import { describe, expect, it } from 'vitest';

import { render, staticModel } from '../src/replay/replay.js';

const data: any = fixture;
const settle = () => new Promise((resolve) => setTimeout(resolve, 200));

/** A widget model as anywidget gives one: get, on/off, and send (recorded). */
function widgetModel(value: any) {
  const listeners: Record<string, ((m: any) => void)[]> = {};
  const sent: any[] = [];
  return {
    sent,
    get: (name: string) => (name === 'data' ? value : undefined),
    on: (event: string, f: (m: any) => void) => (listeners[event] ||= []).push(f),
    off: () => undefined,
    send: (message: any) => sent.push(message),
    emit: (event: string, message: any) => (listeners[event] || []).forEach((f) => f(message))
  };
}

function mount(model: any) {
  const el = document.createElement('div');
  document.body.append(el);
  render({ model, el });
  return el;
}

describe('replay renderer', () => {
  it('lists every step once, round by round, and shows the first', () => {
    const el = mount(staticModel(data));
    expect(el.querySelectorAll('.jdp-step')).toHaveLength(data.steps.length);
    expect([...el.querySelectorAll('.jdp-round-sep')].map((e) => e.textContent)).toEqual(['Round 1', 'Round 2']);
    expect(el.querySelector('.jdp-position')!.textContent).toBe(`step 1 of ${data.steps.length}`);
    expect(el.querySelector('.jdp-step.jdp-on')!.getAttribute('data-index')).toBe('0');
    expect(el.querySelector('.jdp-words')!.textContent).toContain('Let me look at the code');
    expect(el.querySelector('.jdp-thinking summary')!.textContent).toBe('Thinking (summarised)');
    expect(el.textContent).not.toMatch(/null|undefined|NaN|\[object/);
  });

  it('moves with the slider, the list and the keys, redrawing only the detail', async () => {
    const el = mount(staticModel(data));
    const list = el.querySelector('.jdp-steps')!;
    const rows = list.children.length;
    const slider = el.querySelector<HTMLInputElement>('.jdp-slider')!;
    slider.value = '3';
    slider.dispatchEvent(new Event('input'));
    await settle();
    expect(el.querySelector('.jdp-position')!.textContent).toBe(`step 4 of ${data.steps.length}`);
    expect(el.querySelector('.jdp-result .jdp-badge')!.textContent).toBe('denied');
    expect(el.querySelector('.jdp-perms')!.textContent).toContain('deny');
    (el.querySelector('.jdp-step[data-index="1"]') as HTMLElement).click();
    await settle();
    expect(slider.value).toBe('1');
    expect([...el.querySelectorAll('.d2h-file-name')].map((n) => n.textContent!.trim())).toEqual([
      'calc.py',
      'notes/step0001.txt'
    ]);
    const root = el.querySelector('.jdp')!;
    root.dispatchEvent(new KeyboardEvent('keydown', { key: 'j', bubbles: true }));
    await settle();
    expect(slider.value).toBe('2');
    root.dispatchEvent(new KeyboardEvent('keydown', { key: 'End', bubbles: true }));
    await settle();
    expect(slider.value).toBe(String(data.steps.length - 1));
    expect(list.children.length).toBe(rows); // the list was drawn once
    for (const index of [1, 2, 3, 4, 5, 6]) {
      (el.querySelector(`.jdp-step[data-index="${index}"]`) as HTMLElement).click();
      await settle();
      // no missing value written out ("null" beside a step that was not reconstructed)
      expect(el.querySelector('.jdp-detail')!.textContent).not.toMatch(/null|undefined|NaN|\[object/);
    }
  });

  it('keeps the agent\u2019s markup as text', async () => {
    const el = mount(staticModel(data));
    const last = data.steps.length - 1;
    (el.querySelector(`.jdp-step[data-index="${last}"]`) as HTMLElement).click();
    await settle();
    expect(el.querySelector('.jdp-words')!.textContent).toContain('</script><script>');
    expect(el.querySelectorAll('script')).toHaveLength(0);
  });

  it('asks the kernel for a diff the data lacks, and draws its answer', async () => {
    const model = widgetModel({ ...data, diffs: undefined });
    const el = mount(model);
    const step = data.steps[1];
    (el.querySelector('.jdp-step[data-index="1"]') as HTMLElement).click();
    await settle();
    expect(model.sent).toContainEqual({ action: 'diff', index: 1, tree: step.tree });
    expect(el.querySelector('.jdp-diff-wait')!.textContent).toBe('Loading the diff\u2026');
    model.emit('msg:custom', { kind: 'diff', tree: step.tree, diff: data.diffs[step.tree] });
    expect(el.querySelector('.jdp-diff-wait')).toBeNull();
    expect(el.querySelectorAll('.d2h-file-name')).toHaveLength(2);
    // an error is said where the diff would be
    (el.querySelector('.jdp-step[data-index="7"]') as HTMLElement).click();
    await settle();
    const seven = data.steps[7].tree;
    model.emit('msg:custom', { kind: 'diff', tree: seven, error: 'the tree is gone' });
    expect(el.querySelector('.jdp-diff-wait')!.textContent).toBe('The diff could not be read: the tree is gone');
  });

  it('says when an export carries no diff for the step', async () => {
    const el = mount(staticModel({ ...data, diffs: {} }));
    (el.querySelector('.jdp-step[data-index="1"]') as HTMLElement).click();
    await settle();
    expect(el.querySelector('.jdp-diff-wait')!.textContent).toBe('This export does not carry the diff of this step.');
  });
});
