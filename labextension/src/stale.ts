/**
 * Live views whose kernel is gone, and the tasks a card can resume: plain DOM, no
 * JupyterLab import (tested with vitest and jsdom). Used by the record card (mime.ts).
 */

/** States a Resume continues. */
export const RESUMABLE = new Set(['interrupted', 'paused']);

/**
 * Hide each live view in `area` whose kernel is gone (its widgets disconnected, or "Error
 * displaying widget"), and show it again once it is live (a resumed task's new view).
 */
export function hideStaleViews(area: Element, own: Element): void {
  for (const child of Array.from(area.querySelectorAll('.jp-OutputArea-child'))) {
    if (child === own || child.contains(own)) {
      continue;
    }
    const views = child.querySelectorAll('.jupyter-widgets');
    if (!views.length) {
      continue;
    }
    const text = (child.textContent || '').trim();
    const stale =
      child.querySelector('.jupyter-widgets-disconnected') !== null ||
      text.includes('Error displaying widget');
    child.classList.toggle('jd-stale-view', stale);
  }
}
