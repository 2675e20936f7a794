/**
 * The mime renderer of the task record (`application/vnd.jupyter-delegate.task+json`):
 * a card, rendered without a kernel and, declared safe, in untrusted notebooks too. Where
 * the live task view (an ipywidgets output) is shown in the same output area, the card
 * folds to one line; a click on its header unfolds or folds it.
 *
 * A live view whose kernel is gone (restarted: its widgets disconnected; or a reopened
 * notebook: "Error displaying widget") is hidden, and the card beside it unfolds. The card
 * of an interrupted or paused task offers Resume, which the notebook plugin (restart.ts)
 * runs as the card's cell.
 */

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { liveWidgetBeside, renderCard } from './card';
import { EARLY_MIME, earlyHtml } from './early';
import { MIME, cardModel, parseRecord } from './model';
import { replayExtension } from './replay-mime';
import { RESUMABLE, hideStaleViews } from './stale';

/** The event a card's Resume button dispatches (bubbling, cancelable) with the task's id
 * and a `done(error)` callback; the notebook plugin (restart.ts) handles it. */
export const RESUME_EVENT = 'jd-resume';

export class TaskRecordRenderer extends Widget implements IRenderMime.IRenderer {
  private data: unknown = null;
  private userFolded: boolean | null = null; // the user's choice wins over the detection
  private widgetBeside = false;
  private observer: MutationObserver | null = null;
  private resumeNote = ''; // what the last Resume said ('' none yet)

  constructor() {
    super();
    this.addClass('jd-record');
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.data = model.data[MIME];
    this.render();
    return Promise.resolve();
  }

  protected onAfterAttach(): void {
    const area = this.node.closest('.jp-OutputArea');
    if (area && typeof MutationObserver !== 'undefined') {
      this.observer = new MutationObserver(() => this.detect(area));
      this.observer.observe(area, {
        childList: true,
        subtree: true,
        attributes: true,
        attributeFilter: ['class']
      });
      this.detect(area);
    }
  }

  protected onBeforeDetach(): void {
    this.observer?.disconnect();
    this.observer = null;
  }

  dispose(): void {
    this.observer?.disconnect();
    super.dispose();
  }

  private detect(area: Element): void {
    const own = this.node.closest('.jp-OutputArea-child') ?? this.node;
    hideStaleViews(area, own);
    const beside = Array.from(area.querySelectorAll('.jp-OutputArea-child')).some(
      child =>
        child !== own && !child.classList.contains('jd-stale-view') && liveWidgetBeside(child, own)
    );
    if (beside !== this.widgetBeside) {
      this.widgetBeside = beside;
      this.render();
    }
  }

  private render(): void {
    const record = parseRecord(this.data);
    this.node.textContent = '';
    if (!record) {
      this.node.textContent = 'jupyter-delegate: this output holds no task record.';
      return;
    }
    const folded = this.userFolded ?? this.widgetBeside;
    const card = renderCard(document, cardModel(record), folded);
    card.querySelector('.jd-card-header')?.addEventListener('click', () => {
      this.userFolded = !folded;
      this.render();
    });
    if (RESUMABLE.has(record.state)) {
      card.querySelector('.jd-card-header')?.after(this.resumeBar(record.id));
    }
    this.node.append(card);
  }

  private resumeBar(id: string): HTMLElement {
    const bar = document.createElement('div');
    bar.className = 'jd-resume-bar';
    const button = document.createElement('button');
    button.className = 'jp-Button jp-mod-styled jp-mod-accept jd-resume';
    button.textContent = 'Resume';
    button.title = `Resume task ${id} in this notebook's kernel`;
    const note = document.createElement('span');
    note.className = 'jd-resume-note';
    note.textContent =
      this.resumeNote ||
      'The kernel that ran this task stopped. Resume continues it from its journal.';
    button.addEventListener('click', event => {
      event.stopPropagation();
      button.disabled = true;
      note.textContent = 'resuming…';
      const done = (error: string) => {
        this.resumeNote = error ? `Resume failed: ${error}` : '';
        note.textContent = this.resumeNote || 'resumed';
        button.disabled = false;
      };
      const asked = new CustomEvent(RESUME_EVENT, {
        bubbles: true,
        cancelable: true,
        detail: { id, done }
      });
      if (this.node.dispatchEvent(asked)) {
        done(`no notebook here to run it in: run \`%delegate resume ${id}\` in a cell`);
      }
    });
    bar.append(button, note);
    return bar;
  }
}

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [MIME],
  createRenderer: () => new TaskRecordRenderer()
};

const extension: IRenderMime.IExtension = {
  id: 'jupyter-delegate:task-record',
  rendererFactory,
  rank: 0,
  dataType: 'json'
};

/**
 * The early header (a `%%delegate` cell's header, shown before its live view draws): the
 * kernel's HTML of it (header.header_html escapes every value), set as it is, where the
 * default HTML renderer would also resolve its links and typeset it as LaTeX, work that
 * competes with the live view's widgets being made. Nothing once it is no longer early (a
 * saved one that was not emptied: its task's record tells the task's state). Trusted
 * outputs only (not `safe`): in an untrusted notebook its plain text is shown.
 */
export class EarlyHeaderRenderer extends Widget implements IRenderMime.IRenderer {
  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.node.innerHTML = earlyHtml(model.data);
  }
}

const earlyExtension: IRenderMime.IExtension = {
  id: 'jupyter-delegate:early-header',
  rendererFactory: {
    safe: false,
    mimeTypes: [EARLY_MIME],
    createRenderer: () => new EarlyHeaderRenderer()
  },
  rank: 0,
  dataType: 'json'
};

// The task record's card, the early header, and a task's replay (replay-mime.ts).
export default [extension, earlyExtension, replayExtension];
