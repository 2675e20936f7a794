/**
 * The "Delegations" sidebar: every task of the active notebook (read from its task
 * records), with state badges and cost, the counts of running tasks and of tasks awaiting
 * review, and a bell counting the tasks that need you in every open notebook (also a badge
 * on its tab; notify.ts, which also shows JupyterLab notifications). A click scrolls to
 * the task's cell. It follows the records as they change.
 * JupyterLab 4 and Notebook 7 (whose notebook page has a left panel too).
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { LabIcon, bellIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { renderSidebar } from './card';
import { TaskNotifier } from './notify';
import restartPlugin from './restart';
import { OutputLike, SidebarModel, sidebarModel } from './model';

// A notebook cell (left) handing its work to an agent on a branch (right): not the
// table of contents' list of lines.
const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
<g fill="none"><g class="jp-icon3" stroke="#616161" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
<rect x="2.5" y="5" width="8" height="14" rx="1.5"/>
<path d="M10.5 12h5"/><path d="M13.5 9l3 3-3 3"/>
<circle cx="19.5" cy="6" r="2"/><circle cx="19.5" cy="18" r="2"/><path d="M19.5 8v8"/>
</g></g>
</svg>`;

export const delegationsIcon = new LabIcon({ name: 'jupyter-delegate:delegations', svgstr: ICON_SVG });

/** The outputs of each cell of a notebook panel, as plain objects. */
export function cellOutputs(panel: NotebookPanel): OutputLike[][] {
  const cells: OutputLike[][] = [];
  const model = panel.content.model;
  if (!model) {
    return cells;
  }
  for (let i = 0; i < model.cells.length; i++) {
    const cell: any = model.cells.get(i);
    const outputs: OutputLike[] = [];
    if (cell.type === 'code' && cell.outputs) {
      for (let j = 0; j < cell.outputs.length; j++) {
        outputs.push({ data: cell.outputs.get(j).data as Record<string, unknown> });
      }
    }
    cells.push(outputs);
  }
  return cells;
}

export class DelegationsPanel extends Widget {
  private panel: NotebookPanel | null = null;
  private pending = 0;
  private last = '';
  private needsYou = 0;

  constructor(tracker: INotebookTracker) {
    super();
    this.id = 'jupyter-delegate-sidebar';
    this.addClass('jd-sidebar');
    this.title.icon = delegationsIcon;
    this.title.caption = 'Delegations';
    tracker.currentChanged.connect((_, panel) => this.follow(panel), this);
    this.follow(tracker.currentWidget);
  }

  /** The bell: how many tasks of the open notebooks need you (waiting, in review), on
   * the sidebar's tab (a badge) and in its header. */
  setNeedsYou(count: number): void {
    if (count === this.needsYou) {
      return;
    }
    this.needsYou = count;
    // The shell keeps the tab's `data-id` in the same dataset: keep the rest of it. Keys
    // become attributes as written (`data-needs-you`).
    const rest = { ...(this.title.dataset as Record<string, string>) };
    delete rest['needs-you'];
    this.title.dataset = count ? { ...rest, 'needs-you': String(count) } : rest;
    this.title.caption = count ? `Delegations · ${count} need you` : 'Delegations';
    this.last = '';
    this.schedule();
  }

  private follow(panel: NotebookPanel | null): void {
    if (this.panel) {
      this.panel.model?.contentChanged.disconnect(this.schedule, this);
      this.panel.content.modelChanged.disconnect(this.onModelChanged, this);
    }
    this.panel = panel;
    if (panel) {
      panel.content.modelChanged.connect(this.onModelChanged, this);
      panel.model?.contentChanged.connect(this.schedule, this);
      void panel.context.ready.then(() => {
        if (this.panel === panel) {
          this.schedule();
        }
      });
    }
    this.schedule();
  }

  private onModelChanged(): void {
    this.panel?.model?.contentChanged.connect(this.schedule, this);
    this.schedule();
  }

  private schedule(): void {
    if (!this.pending) {
      this.pending = window.setTimeout(() => {
        this.pending = 0;
        this.update();
      }, 50);
    }
  }

  protected onUpdateRequest(): void {
    const model: SidebarModel = this.panel
      ? sidebarModel(cellOutputs(this.panel))
      : { tasks: [], running: 0, review: 0, totalCost: '$0.0000' };
    const key = JSON.stringify([this.panel?.id, model, this.needsYou]);
    if (key === this.last) {
      return;
    }
    this.last = key;
    const title = document.createElement('h3');
    title.className = 'jd-sidebar-title';
    title.textContent = this.panel ? `Delegations · ${this.panel.title.label}` : 'Delegations';
    if (this.needsYou) {
      const bell = document.createElement('span');
      bell.className = 'jd-bell';
      bell.title = `${this.needsYou} task(s) in the open notebooks need you (waiting or in review)`;
      bell.append(
        bellIcon.element({ tag: 'span', className: 'jd-bell-icon' }),
        String(this.needsYou)
      );
      title.append(' ', bell);
    }
    this.node.textContent = '';
    this.node.append(title, renderSidebar(document, model, index => this.goTo(index)));
  }

  private goTo(index: number): void {
    const panel = this.panel;
    if (!panel) {
      return;
    }
    const notebook = panel.content;
    notebook.activeCellIndex = index;
    const cell = notebook.widgets[index];
    if (cell) {
      void notebook.scrollToCell(cell, 'start');
    }
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-delegate:sidebar',
  description:
    'The Delegations sidebar (the tasks of the active notebook, the bell of those needing you) and notifications when a task asks, reaches review, fails or is interrupted.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker) => {
    const panel = new DelegationsPanel(tracker);
    app.shell.add(panel, 'left', { rank: 650 });
    const notifier = new TaskNotifier(app, tracker, cellOutputs);
    notifier.onCount = count => panel.setNeedsYou(count);
  }
};

export default [plugin, restartPlugin];
