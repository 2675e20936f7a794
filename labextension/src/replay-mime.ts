/**
 * The mime renderer of a task's replay (`application/vnd.jupyter-delegate.replay+json`,
 * the data of `jupyter_delegate.replay.Replay.to_dict(diffs=True)`): the same renderer as
 * the notebook widget and the offline page (replay/replay.js), drawn from the output's own
 * data, so a saved notebook shows the replay with no kernel. Declared safe: it builds the
 * DOM from text (diff2html escapes the diff), runs nothing from the data.
 *
 * Ranked before the widget view (-10) that shares its output bundle: in JupyterLab the
 * replay needs no kernel, so it never shows "Error displaying widget" once the kernel is
 * gone; front ends without this extension (VS Code) draw the anywidget instead.
 */

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { render, staticModel } from './replay/replay.js';

export const REPLAY_MIME = 'application/vnd.jupyter-delegate.replay+json';

export class ReplayRenderer extends Widget implements IRenderMime.IRenderer {
  private cleanup: (() => void) | null = null;

  constructor() {
    super();
    this.addClass('jd-replay');
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.cleanup?.();
    const data = model.data[REPLAY_MIME] as { steps?: unknown } | undefined;
    if (!data || !Array.isArray(data.steps)) {
      this.node.textContent = 'jupyter-delegate: this output holds no replay.';
      return Promise.resolve();
    }
    this.cleanup = render({ model: staticModel(data), el: this.node });
    return Promise.resolve();
  }

  dispose(): void {
    this.cleanup?.();
    this.cleanup = null;
    super.dispose();
  }
}

export const replayRendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [REPLAY_MIME],
  createRenderer: () => new ReplayRenderer()
};

export const replayExtension: IRenderMime.IExtension = {
  id: 'jupyter-delegate:replay',
  rendererFactory: replayRendererFactory,
  rank: -20,
  dataType: 'json'
};
