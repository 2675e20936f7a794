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
