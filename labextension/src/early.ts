/**
 * The early header (jupyter_delegate/notebook/header.py): what its renderer (mime.ts)
 * draws. Plain functions, no JupyterLab import (tested with vitest).
 */

/** The early header's mime. */
export const EARLY_MIME = 'application/vnd.jupyter-delegate.early-header+json';
/** How long after it was shown an early header is drawn (header.py's EARLY_FOR_S). */
export const EARLY_FOR_S = 60;

/** Whether an early header shown at `data.at` (epoch s) is still early at `now` (epoch ms). */
export function isEarly(data: unknown, now: number = Date.now()): boolean {
  const at = Number((data as { at?: unknown } | null)?.at);
  const age = now / 1000 - at;
  return Number.isFinite(age) && age < EARLY_FOR_S;
}

/** The HTML an early header's bundle draws: the kernel's, while early; else nothing. */
export function earlyHtml(bundle: Record<string, unknown>, now: number = Date.now()): string {
  const html = bundle['text/html'];
  return isEarly(bundle[EARLY_MIME], now) && typeof html === 'string' ? html : '';
}
