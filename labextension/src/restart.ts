/**
 * Views that survive the kernel, in the notebook (JupyterLab 4 and Notebook 7):
 *
 * - One truth per task: a task record the kernel publishes (a new display or a display_id
 *   update) is applied to every output of the notebook holding a record of the same task.
 *   A restarted or new kernel cannot reach an old output by its display_id (the front end
 *   forgets display ids with the kernel), so `%load_ext jupyter_delegate` (which publishes
 *   the recorded tasks' states) and `%delegate resume ID` from any cell update the record
 *   where it is, and the saved notebook keeps one record per task.
 * - The records the notebook shows, told to the kernel: `%load_ext jupyter_delegate` opens
 *   the `jupyter_delegate.records` comm, and the answer (each task record's id, repository
 *   and cell) lets a restarted kernel re-attach tasks of a notebook not saved since.
 * - Resume from the card: the card of an interrupted or paused task has a Resume button
 *   (mime.ts) that asks, by a `jd-resume` DOM event, to run `%delegate resume ID` as the
 *   card's own cell: its live view takes the place of the stale one, its record updates
 *   the card.
 * - The `%%delegate` cell is edited as plain text, not Python: no Python highlighting or
 *   auto-indent in the outcome's lines; a `%%delegate-plan` cell (a plan's YAML) as YAML.
 * - Plan records (`application/vnd.jupyter-delegate.plan+json`, plan_record.py) are kept
 *   true the same way, and told to a restarted kernel with the task records.
 * - A new cell on request: the plan and attempts widgets (plan.js, attempts.js) dispatch
 *   a bubbling, cancelable `jd-insert-cell` event with `{source, run, done(error)}`; the
 *   cell is inserted below the widget's cell (and run, with `run`), so "Insert as cell"
 *   and a task's id need no copy and paste.
 *
 * - The early header goes when the live view has drawn: a `%%delegate` cell shows the
 *   task's header as plain HTML first (jupyter_delegate/notebook/header.py), marked with
 *   `EARLY_MIME`; the view's live line (live.js) hides it as it draws and sends a bubbling
 *   `jd-live-shown` event, on which that output is emptied in the notebook's model, so the
 *   saved notebook keeps no stale header (JupyterLab applies no display update from the
 *   kernel once the cell has finished).
 *
 * Not here: hiding the stale live view and unfolding the card beside it (mime.ts, from
 * the output area's DOM), the card itself (card.ts).
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import type { Cell, ICodeCellModel } from '@jupyterlab/cells';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import type { KernelMessage } from '@jupyterlab/services';

import { EARLY_MIME } from './early';
import { RESUME_EVENT } from './mime';
import { MIME, WIDGET_MIME } from './model';

export const CELL_MAGIC = '%%delegate';
export const PLAN_CELL_MAGIC = '%%delegate-plan';
/** The plan record's mime (jupyter_delegate/notebook/plan_record.py). */
export const PLAN_MIME = 'application/vnd.jupyter-delegate.plan+json';
/** The event by which a widget asks for a new cell below its own. */
export const INSERT_EVENT = 'jd-insert-cell';
const PLAIN = 'text/plain';
const YAML = 'text/x-yaml';

function idIn(data: unknown, mime: string): string | null {
  const record = (data as Record<string, any> | null)?.[mime];
  return record && typeof record === 'object' && typeof record.id === 'string'
    ? record.id
    : null;
}

/** What a record output is of: `task ID` or `plan ID` (null: no record). */
function recordKey(data: unknown): string | null {
  const task = idIn(data, MIME);
  if (task) {
    return `task ${task}`;
  }
  const plan = idIn(data, PLAN_MIME);
  return plan ? `plan ${plan}` : null;
}

/** Each output of the notebook's code cells, in order: its cell, its cell's outputs and
 * its index there. */
function* codeOutputs(
  panel: NotebookPanel
): Generator<[ICodeCellModel, ICodeCellModel['outputs'], number]> {
  const model = panel.content.model;
  for (let i = 0; model && i < model.cells.length; i++) {
    const cell = model.cells.get(i);
    if (cell.type !== 'code') {
      continue;
    }
    const outputs = (cell as ICodeCellModel).outputs;
    for (let j = 0; j < outputs.length; j++) {
      yield [cell as ICodeCellModel, outputs, j];
    }
  }
}

/** Apply `data` (a bundle holding a task or plan record) to every output of that task or
 * plan. */
export function applyRecord(panel: NotebookPanel, data: Record<string, unknown>): number {
  const id = recordKey(data);
  if (!id) {
    return 0;
  }
  const wanted = JSON.stringify(data);
  let applied = 0;
  for (const [, outputs, j] of codeOutputs(panel)) {
    const output = outputs.get(j);
    if (recordKey(output.data) !== id || JSON.stringify(output.data) === wanted) {
      continue;
    }
    const json = output.toJSON() as any;
    outputs.set(j, { ...json, data: data as any });
    applied++;
  }
  return applied;
}

function followRecords(panel: NotebookPanel): void {
  panel.sessionContext.iopubMessage.connect((_, msg) => {
    const kind = msg.header.msg_type;
    if (kind !== 'display_data' && kind !== 'update_display_data' && kind !== 'execute_result') {
      return;
    }
    const data = (msg.content as any).data;
    if (data && recordKey(data)) {
      applyRecord(panel, data);
    }
  });
}

/** The comm on which the kernel asks for the records the notebook shows (magics.py). */
export const RECORDS_COMM = 'jupyter_delegate.records';

/** Each task (or plan, with `mime`) the notebook shows a record of, once: its id,
 * repository and cell. */
export function shownRecords(panel: NotebookPanel, mime: string = MIME): Record<string, unknown>[] {
  const found = new Map<string, Record<string, unknown>>();
  for (const [cell, outputs, j] of codeOutputs(panel)) {
    const record = (outputs.get(j).data as any)?.[mime];
    const id = idIn(outputs.get(j).data, mime);
    if (id && !found.has(id)) {
      found.set(id, {
        id,
        repo: typeof record.repo === 'string' ? record.repo : '',
        repo_relative: typeof record.repo_relative === 'string' ? record.repo_relative : '',
        cell_id: cell.id
      });
    }
  }
  return [...found.values()];
}

function answerRecordRequests(panel: NotebookPanel): void {
  const registered = new WeakSet<object>();
  const register = () => {
    const kernel = panel.sessionContext.session?.kernel;
    if (!kernel || registered.has(kernel)) {
      return;
    }
    registered.add(kernel);
    kernel.registerCommTarget(RECORDS_COMM, comm => {
      comm.send({ records: shownRecords(panel), plans: shownRecords(panel, PLAN_MIME) } as any);
    });
  };
  panel.sessionContext.kernelChanged.connect(register);
  void panel.sessionContext.ready.then(register);
  register();
}

/** Run `%delegate resume ID` as the cell holding the card; its live view replaces the
 * cell's stale one. */
async function resume(panel: NotebookPanel, cell: Cell, id: string): Promise<void> {
  const kernel = panel.sessionContext.session?.kernel;
  if (!kernel) {
    throw new Error('no kernel: start one, then Resume');
  }
  const outputs = (cell.model as ICodeCellModel).outputs;
  const code = `%load_ext jupyter_delegate\n%delegate resume ${id}`;
  const future = kernel.requestExecute(
    { code, silent: false, store_history: false, stop_on_error: true },
    false, // kept: the record's later display updates come to it
    { cellId: cell.model.id }
  );
  let error = '';
  future.onIOPub = (msg: KernelMessage.IIOPubMessage) => {
    const kind = msg.header.msg_type;
    if (kind === 'error') {
      error = (msg.content as any).evalue;
      return;
    }
    if (kind !== 'display_data') {
      return;
    }
    const data = (msg.content as any).data ?? {};
    if (!(WIDGET_MIME in data)) {
      return; // the record: applied by followRecords
    }
    const view = { output_type: 'display_data', data, metadata: {} } as any;
    for (let j = 0; j < outputs.length; j++) {
      if (WIDGET_MIME in (outputs.get(j).data ?? {})) {
        outputs.set(j, view);
        return;
      }
    }
    outputs.add(view);
  };
  await future.done;
  if (error) {
    throw new Error(error);
  }
}

function listenForResume(panel: NotebookPanel): void {
  panel.node.addEventListener(RESUME_EVENT, event => {
    const detail = (event as CustomEvent<{ id: string; done: (error: string) => void }>)
      .detail;
    const cell = panel.content.widgets.find(c => c.node.contains(event.target as Node));
    if (!cell || !detail?.id) {
      return;
    }
    event.preventDefault();
    resume(panel, cell, detail.id).then(
      () => detail.done(''),
      (e: Error) => detail.done(e.message || String(e))
    );
  });
}

/** The event live.js sends when a task's live view has drawn in its early header's place. */
export const SHOWN_EVENT = 'jd-live-shown';

/** Empty every early header of task `id` in the notebook; how many were emptied. */
export function emptyEarlyHeaders(panel: NotebookPanel, id: string): number {
  let emptied = 0;
  for (const [, outputs, j] of codeOutputs(panel)) {
    if ((outputs.get(j).data as any)?.[EARLY_MIME]?.task === id) {
      outputs.set(j, { output_type: 'display_data', data: {}, metadata: {} });
      emptied++;
    }
  }
  return emptied;
}

function listenForShown(panel: NotebookPanel): void {
  panel.node.addEventListener(SHOWN_EVENT, event => {
    const id = (event as CustomEvent<{ task?: unknown }>).detail?.task;
    if (typeof id === 'string' && id) {
      emptyEarlyHeaders(panel, id);
    }
  });
}

/** A new code cell holding `source` below `cell` (run at once with `run`). */
async function insertBelow(
  panel: NotebookPanel,
  cell: Cell,
  source: string,
  run: boolean
): Promise<void> {
  const notebook = panel.content;
  const model = notebook.model;
  if (!model) {
    throw new Error('the notebook is not loaded');
  }
  const index = notebook.widgets.indexOf(cell);
  model.sharedModel.insertCell(index + 1, { cell_type: 'code', source });
  notebook.activeCellIndex = index + 1;
  notebook.deselectAll();
  const inserted = notebook.widgets[index + 1];
  if (inserted) {
    void notebook.scrollToCell(inserted, 'start');
  }
  if (run) {
    await NotebookActions.run(notebook, panel.sessionContext);
  }
}

function listenForInsert(panel: NotebookPanel): void {
  panel.node.addEventListener(INSERT_EVENT, event => {
    const detail = (
      event as CustomEvent<{ source: string; run?: boolean; done?: (error: string) => void }>
    ).detail;
    const cell = panel.content.widgets.find(c => c.node.contains(event.target as Node));
    if (!cell || typeof detail?.source !== 'string') {
      return;
    }
    event.preventDefault();
    insertBelow(panel, cell, detail.source, Boolean(detail.run)).then(
      () => detail.done?.(''),
      (e: Error) => detail.done?.(e.message || String(e))
    );
  });
}

/** Plain text for `%%delegate` cells, YAML for `%%delegate-plan` cells, the notebook's
 * language for the others. */
function followCellMagic(panel: NotebookPanel): void {
  const notebook = panel.content;
  const watched = new WeakSet<object>();
  const apply = (cell: Cell) => {
    if (cell.model.type !== 'code') {
      return;
    }
    const source = cell.model.sharedModel.getSource();
    const wanted = source.startsWith(PLAN_CELL_MAGIC)
      ? YAML
      : source.startsWith(CELL_MAGIC)
        ? PLAIN
        : notebook.codeMimetype;
    if (cell.model.mimeType !== wanted) {
      cell.model.mimeType = wanted;
    }
  };
  const watch = () => {
    for (const cell of notebook.widgets) {
      if (!watched.has(cell.model)) {
        watched.add(cell.model);
        cell.model.sharedModel.changed.connect(() => apply(cell));
        cell.model.mimeTypeChanged.connect(() => apply(cell));
      }
      apply(cell);
    }
  };
  notebook.model?.cells.changed.connect(watch);
  notebook.modelChanged.connect(() => {
    notebook.model?.cells.changed.connect(watch);
    watch();
  });
  void panel.context.ready.then(watch);
  watch();
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-delegate:restart',
  description:
    'Task and plan records kept true across kernel restarts, Resume from the card, new cells on a widget\'s request, the early header emptied once the live view draws, and the %%delegate cell edited as plain text.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (_app: JupyterFrontEnd, tracker: INotebookTracker) => {
    tracker.widgetAdded.connect((_, panel) => {
      followRecords(panel);
      answerRecordRequests(panel);
      listenForResume(panel);
      listenForInsert(panel);
      listenForShown(panel);
      followCellMagic(panel);
    });
  }
};

export default plugin;
