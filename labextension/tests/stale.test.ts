// @vitest-environment jsdom
import { describe, expect, it } from 'vitest';

import { RESUMABLE, hideStaleViews } from '../src/stale';

function area(html: string): HTMLElement {
  const node = document.createElement('div');
  node.className = 'jp-OutputArea';
  node.innerHTML = html;
  return node;
}

describe('hideStaleViews', () => {
  it('hides a live view whose widgets are disconnected (a restarted kernel), not the card', () => {
    const a = area(
      '<div class="jp-OutputArea-child" id="view"><div class="jupyter-widgets"><div class="jupyter-widgets jupyter-widgets-disconnected">x</div></div></div>' +
        '<div class="jp-OutputArea-child" id="card"><div class="jd-record">card</div></div>'
    );
    hideStaleViews(a, a.querySelector('#card')!);
    expect(a.querySelector('#view')!.classList.contains('jd-stale-view')).toBe(true);
    expect(a.querySelector('#card')!.classList.contains('jd-stale-view')).toBe(false);
  });

  it('hides "Error displaying widget" and shows a view again once it is live', () => {
    const a = area(
      '<div class="jp-OutputArea-child" id="view"><div class="jupyter-widgets">Error displaying widget: model not found</div></div>' +
        '<div class="jp-OutputArea-child" id="card"></div>'
    );
    const own = a.querySelector('#card')!;
    hideStaleViews(a, own);
    const view = a.querySelector('#view')!;
    expect(view.classList.contains('jd-stale-view')).toBe(true);
    view.innerHTML = '<div class="jupyter-widgets"><div class="jd-task">live again</div></div>';
    hideStaleViews(a, own);
    expect(view.classList.contains('jd-stale-view')).toBe(false);
  });

  it('leaves a live view alone', () => {
    const a = area('<div class="jp-OutputArea-child" id="view"><div class="jupyter-widgets">running</div></div>');
    hideStaleViews(a, document.createElement('div'));
    expect(a.querySelector('#view')!.classList.contains('jd-stale-view')).toBe(false);
  });
});

describe('RESUMABLE', () => {
  it('is the states resume continues', () => {
    expect([...RESUMABLE].sort()).toEqual(['interrupted', 'paused']);
  });
});
