/**
 * What the early header's renderer draws (src/early.ts, mime.ts;
 * jupyter_delegate/notebook/header.py): the kernel's HTML while the header is early,
 * nothing once it is stale (a saved one that was never emptied, opened later).
 */
import { describe, expect, it } from 'vitest';

import { EARLY_FOR_S, EARLY_MIME, earlyHtml, isEarly } from '../src/early';

const HTML = '<div class="jd-early" data-task="t1"><div class="jd-header"><b>fix</b></div></div>';

const bundle = (at: unknown) => ({ [EARLY_MIME]: { task: 't1', at }, 'text/html': HTML });

describe('early header', () => {
  it('is early for EARLY_FOR_S after it was shown, and not with no time', () => {
    const now = Date.parse('2026-12-03T12:00:00Z');
    expect(isEarly({ at: now / 1000 - 1 }, now)).toBe(true);
    expect(isEarly({ at: now / 1000 - EARLY_FOR_S - 1 }, now)).toBe(false);
    expect(isEarly({ at: 'soon' }, now)).toBe(false);
    expect(isEarly({}, now)).toBe(false);
    expect(isEarly(null, now)).toBe(false);
  });

  it("draws the kernel's header while early, nothing once stale", () => {
    const now = Date.parse('2026-12-03T12:00:00Z');
    expect(earlyHtml(bundle(now / 1000 - 0.2), now)).toBe(HTML);
    expect(earlyHtml(bundle(now / 1000 - 3600), now)).toBe('');
    expect(earlyHtml({ [EARLY_MIME]: { task: 't1', at: now / 1000 } }, now)).toBe('');
  });
});
