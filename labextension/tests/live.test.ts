// @vitest-environment jsdom
/**
 * The header and live line (jupyter_delegate/notebook/static/live.js, a plain anywidget
 * module) under fake timers: the clock turns as each second of the task turns, with no
 * message from the kernel, and stops with the task; the header is the kernel's HTML,
 * redrawn when it changes, shown even before the task has started.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { fakeModel as model } from './anywidget-model';

// @ts-expect-error: a plain ES module without types
import live from '../../jupyter_delegate/notebook/static/live.js';

const clock = (el: HTMLElement) => el.querySelector('.jd-live-clock')!.textContent;

describe('live line clock', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2026-12-02T12:00:00.000Z'));
  });
  afterEach(() => vi.useRealTimers());

  it('turns as the second turns, not up to a second late', () => {
    const now = Date.now() / 1000;
    const m = model({ started_at: now - 4.3, activity: { kind: 'command', verb: 'running', since: now - 1 } });
    const el = document.createElement('div');
    const cleanup = live.render({ model: m, el });
    expect(clock(el)).toBe('4s');
    vi.advanceTimersByTime(650); // 4.95 s into the task
    expect(clock(el)).toBe('4s');
    vi.advanceTimersByTime(100); // 5.05 s: the second turned
    expect(clock(el)).toBe('5s');
    vi.advanceTimersByTime(2000);
    expect(clock(el)).toBe('7s');
    expect(el.querySelector('.jd-live-now')!.textContent).toBe('now: running (3 s)');
    cleanup();
  });

  it('shows how long the task took once it ended, and stops ticking when removed', () => {
    const now = Date.now() / 1000;
    const m = model({ started_at: now - 61.5 });
    const el = document.createElement('div');
    const cleanup = live.render({ model: m, el });
    expect(clock(el)).toBe('1m 01s');
    m.set('ended_at', now + 0.2);
    expect(clock(el)).toBe('took 1m 01s');
    cleanup();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('shows the header above the line, before the task starts and as it changes', () => {
    const m = model({ header: '<div class="jd-header"><code>t1</code> <b>fix</b></div>', started_at: 0 });
    const el = document.createElement('div');
    const cleanup = live.render({ model: m, el });
    expect(el.querySelector('.jd-header code')!.textContent).toBe('t1');
    expect((el.querySelector('.jd-live') as HTMLElement).style.display).toBe('none');
    m.set('header', '<div class="jd-header"><code>t1</code> <b>fix</b> <span class="jd-meta">2 steps</span></div>');
    expect(el.querySelector('.jd-header .jd-meta')!.textContent).toBe('2 steps');
    expect(el.firstElementChild!.className).toBe('jd-live-header');
    cleanup();
  });
});

describe('live line writes', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2026-12-02T12:00:00.000Z'));
  });
  afterEach(() => vi.useRealTimers());

  // What a redraw changed in the DOM: the classes of the elements written (a text node's
  // parent), so a test can say which parts a tick or a change touched.
  const written = (records: MutationRecord[]) =>
    records.map(r => {
      const node = r.type === 'characterData' || r.target.nodeType === 3 ? r.target.parentElement! : r.target;
      return `${r.type}:${(node as HTMLElement).className}`;
    });

  it('writes only the clock and the activity\'s time as a second turns', async () => {
    const now = Date.now() / 1000;
    const m = model({
      started_at: now - 4.5,
      activity: { kind: 'tool', verb: 'running', subject: 'pytest -q', since: now - 1.5 }
    });
    const el = document.createElement('div');
    const cleanup = live.render({ model: m, el });
    expect(el.querySelector('.jd-live-now')!.textContent).toBe('now: running pytest -q (1 s)');
    expect((el.querySelector('.jd-live-pulse') as HTMLElement).style.display).toBe('none');
    const observer = new MutationObserver(() => undefined);
    observer.observe(el, { subtree: true, childList: true, characterData: true, attributes: true });
    vi.advanceTimersByTime(600); // 5.1 s: the second turned
    expect(new Set(written(observer.takeRecords()))).toEqual(
      new Set(['childList:jd-live-clock', 'childList:jd-live-since'])
    );
    m.set('tail', ''); // a change that changes nothing shown
    expect(observer.takeRecords()).toEqual([]);
    m.set('activity', { kind: 'model', verb: 'writing', since: now + 0.6 });
    expect(el.querySelector('.jd-live-now')!.textContent).toBe('now: the model is writing (0 s)');
    expect((el.querySelector('.jd-live-pulse') as HTMLElement).style.display).toBe('');
    expect((el.querySelector('.jd-live-now code') as HTMLElement).style.display).toBe('none');
    expect(written(observer.takeRecords())).not.toContain('childList:jd-live-clock');
    m.set('ended_at', now + 0.7);
    expect(el.querySelector('.jd-live-line')!.textContent).toBe('took 5s');
    observer.disconnect();
    cleanup();
  });
});

describe('the early header', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => {
    document.body.textContent = '';
    vi.useRealTimers();
  });

  it('is hidden as the view draws, the page and the kernel told, only for its task', () => {
    document.body.innerHTML =
      '<div class="jd-early" data-task="t1"><div class="jd-header">t1</div></div>' +
      '<div class="jd-early" data-task="t2"><div class="jd-header">t2</div></div>';
    const heard: unknown[] = [];
    document.body.addEventListener('jd-live-shown', e => heard.push((e as CustomEvent).detail));
    const m = model({ header: '<div class="jd-header">t1</div>', early: 't1' });
    const cleanup = live.render({ model: m, el: document.createElement('div') });
    const [one, two] = Array.from(document.querySelectorAll<HTMLElement>('.jd-early'));
    expect(one.style.display).toBe('none'); // at once, as the view draws
    expect(two.style.display).toBe('');
    expect(heard).toEqual([]); // the rest once the view is on screen
    vi.advanceTimersByTime(1);
    expect(heard).toEqual([{ task: 't1' }]);
    expect(m.sent).toEqual([{ shown: true }]);
    cleanup();
  });

  it('is left alone, and nothing sent, by a view that replaces none', () => {
    document.body.innerHTML = '<div class="jd-early" data-task="t1"></div>';
    const m = model({ header: '', early: '' });
    const cleanup = live.render({ model: m, el: document.createElement('div') });
    vi.advanceTimersByTime(1);
    expect(document.querySelector<HTMLElement>('.jd-early')!.style.display).toBe('');
    expect(m.sent).toEqual([]);
    cleanup();
  });
});
