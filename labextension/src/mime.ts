/**
 * The mime renderer of the task record (`application/vnd.jupyter-delegate.task+json`):
 * a card, rendered without a kernel and, declared safe, in untrusted notebooks too. Where
 * the live task view (an ipywidgets output) is shown in the same output area, the card
 * folds to one line; a click on its header unfolds or folds it.
 */

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { liveWidgetBeside, renderCard } from './card';
import { MIME, cardModel, parseRecord } from './model';

export class TaskRecordRenderer extends Widget implements IRenderMime.IRenderer {
  private data: unknown = null;
  private userFolded: boolean | null = null; // the user's choice wins over the detection
  private widgetBeside = false;
  private observer: MutationObserver | null = null;

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
      this.observer.observe(area, { childList: true, subtree: true });
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
    const beside = liveWidgetBeside(area, own);
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
    this.node.append(card);
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

export default extension;
