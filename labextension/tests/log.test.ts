// @vitest-environment jsdom
/**
 * The live log's pages and streamed words (jupyter_delegate/notebook/static/log.js, a
 * plain anywidget module): a slot is redrawn only when its own HTML is sent, so a tool
 * call opened in another page stays open; the slots are laid out in page order, the words
 * below them, and a slot with no page yet is hidden.
 */
import { describe, expect, it } from 'vitest';

import { fakeModel as model } from './anywidget-model';

// @ts-expect-error: a plain ES module without types
import log from '../../jupyter_delegate/notebook/static/log.js';

const call = (name: string) => `<details class="jd-tool"><summary>${name}</summary><pre>out</pre></details>`;

function shown(el: HTMLElement): string[] {
  const slots = [...el.querySelectorAll<HTMLElement>('.jd-log-page')].filter((s) => s.style.display !== 'none');
  slots.sort((a, b) => Number(a.style.order) - Number(b.style.order));
  return slots.map((s) => s.textContent || '');
}

describe('live log pages', () => {
  it('shows the pages in page order and the words below them', () => {
    const m = model({ page_0: call('p3'), page_1: call('p1'), page_2: call('p2'), order: [3, 1, 2], text: '' });
    const el = document.createElement('div');
    log.render({ model: m, el });
    expect(shown(el)).toEqual(['p1out', 'p2out', 'p3out']);
    const words = el.querySelector<HTMLElement>('.jd-log-text')!;
    expect(words.style.display).toBe('none');
    m.set('text', '<div class="jd-text">Now reading</div>');
    expect(words.style.display).toBe('');
    expect(words.textContent).toBe('Now reading');
  });

  it('hides the slots with no page yet', () => {
    const m = model({ page_0: call('p0'), page_1: '', page_2: '', order: [0, -1, -1], text: '' });
    const el = document.createElement('div');
    log.render({ model: m, el });
    expect(shown(el)).toEqual(['p0out']);
    m.set('page_1', call('p1'));
    m.set('order', [0, 1, -1]);
    expect(shown(el)).toEqual(['p0out', 'p1out']);
  });

  it('keeps a tool call the user opened while another page changes', () => {
    const m = model({ page_0: call('a'), page_1: call('b'), page_2: '', order: [0, 1, -1], text: '' });
    const el = document.createElement('div');
    log.render({ model: m, el });
    const opened = el.querySelectorAll<HTMLDetailsElement>('details.jd-tool')[0];
    opened.open = true;
    m.set('page_1', call('b') + call('c'));
    m.set('page_2', call('d'));
    m.set('text', '<div class="jd-text">more words</div>');
    expect(el.contains(opened) && opened.open).toBe(true); // page 0 was not redrawn
    m.set('page_0', call('e')); // page 3 takes page 0's slot over: redrawn
    m.set('order', [3, 1, 2]);
    expect(el.contains(opened)).toBe(false);
    expect(shown(el)).toEqual(['bout' + 'cout', 'dout', 'eout']);
  });

  it('stops listening when the view goes', () => {
    const m = model({ page_0: '', page_1: '', page_2: '', order: [-1, -1, -1], text: '' });
    const el = document.createElement('div');
    const dispose = log.render({ model: m, el });
    dispose();
    expect(Object.values(m.handlers).every((fs) => fs.length === 0)).toBe(true);
  });
});
