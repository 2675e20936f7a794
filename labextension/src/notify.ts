/**
 * Notifications in JupyterLab: when a task record in any open notebook turns `waiting`
 * (a permission question), `review` (with its verdict), `failed` or `interrupted`, a
 * JupyterLab 4 notification says so, with actions: Allow / Deny / Open for a question,
 * Open / Approve for a review, Open otherwise. Open shows the task's cell; Allow, Deny
 * and Approve go to the server's API (`POST /delegate/api/tasks/{id}/{action}`) and,
 * where the server has no such route (404), to the notebook's kernel (the Python API,
 * run silently), which runs the task or takes its lock. The count of tasks needing you
 * (waiting or in review, in every open notebook) is the Delegations sidebar's bell.
 *
 * A notebook's records as it opens are taken as seen (no notification for what the
 * notebook already shows); only changes after that notify, once per state (and
 * question). Not here: the sidebar itself (index.ts), notifications away from
 * JupyterLab (the kernel's notify.py).
 */

import { JupyterFrontEnd } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';

import {
  NEEDS_YOU,
  NotebookRecord,
  OutputLike,
  lastRecords,
  noticeKey,
  noticeMessage
} from './model';

/** The notification's kind for each state that notifies (model.ts NOTIFYING_STATES). */
const NOTIFYING: Record<string, Notification.TypeOptions> = {
  waiting: 'warning',
  review: 'info',
  failed: 'error',
  interrupted: 'warning'
};

type Cells = (panel: NotebookPanel) => OutputLike[][];

export class TaskNotifier {
  private seen = new Map<NotebookPanel, Map<string, string>>();
  private shown = new Map<string, string>(); // task id -> notification id
  private scheduled = new Set<NotebookPanel>();
  /** Called with the count of tasks needing you whenever it may have changed. */
  onCount: (count: number) => void = () => undefined;

  constructor(
    private app: JupyterFrontEnd,
    private tracker: INotebookTracker,
    private cells: Cells
  ) {
    tracker.widgetAdded.connect((_, panel) => this.watch(panel));
    tracker.forEach(panel => this.watch(panel));
  }

  /** Tasks needing you (waiting or in review) in every open notebook. */
  count(): number {
    let n = 0;
    this.tracker.forEach(panel => {
      for (const [record] of lastRecords(this.cells(panel)).values()) {
        n += NEEDS_YOU.has(record.state) ? 1 : 0;
      }
    });
    return n;
  }

  private watch(panel: NotebookPanel): void {
    const follow = () => panel.model?.contentChanged.connect(() => this.schedule(panel));
    panel.content.modelChanged.connect(follow);
    follow();
    void panel.context.ready.then(() => this.schedule(panel));
    panel.disposed.connect(() => {
      this.seen.delete(panel);
      this.onCount(this.count());
    });
  }

  private schedule(panel: NotebookPanel): void {
    if (this.scheduled.has(panel)) {
      return;
    }
    this.scheduled.add(panel);
    window.setTimeout(() => {
      this.scheduled.delete(panel);
      if (!panel.isDisposed) {
        this.scan(panel);
      }
    }, 50);
  }

  private scan(panel: NotebookPanel): void {
    const first = !this.seen.has(panel);
    const seen = this.seen.get(panel) ?? new Map<string, string>();
    this.seen.set(panel, seen);
    for (const [id, [record, cellIndex]] of lastRecords(this.cells(panel))) {
      const key = noticeKey(record);
      if (seen.get(id) === key) {
        continue;
      }
      seen.set(id, key);
      const old = this.shown.get(id);
      if (old) {
        Notification.dismiss(old); // the state it told of has passed
        this.shown.delete(id);
      }
      if (key && !first) {
        this.notify(panel, record, cellIndex);
      }
    }
    this.onCount(this.count());
  }

  private notify(panel: NotebookPanel, record: NotebookRecord, cellIndex: number): void {
    const open: Notification.IAction = {
      label: 'Open',
      caption: `Show task ${record.id}'s cell`,
      callback: () => this.open(panel, record.id, cellIndex)
    };
    const actions: Notification.IAction[] = [];
    const question = record.question;
    if (record.state === 'waiting' && question) {
      const answer = (allow: boolean) => (event: MouseEvent) => {
        event.preventDefault(); // dismissed once answered, not before
        void this.act(panel, record, 'answer', {
          request_id: question.request_id,
          allow,
          reason: ''
        });
      };
      actions.push(
        {
          label: 'Allow',
          caption: `Allow ${question.tool}: ${question.command}`,
          displayType: 'accent',
          callback: answer(true)
        },
        {
          label: 'Deny',
          caption: `Deny ${question.tool}: ${question.command}`,
          displayType: 'warn',
          callback: answer(false)
        }
      );
    }
    actions.push(open);
    if (record.state === 'review') {
      actions.push({
        label: 'Approve',
        caption: `Merge task ${record.id} into ${record.base_branch ?? 'its base'}`,
        displayType: record.verdict === 'proven' ? 'accent' : 'default',
        callback: event => {
          event.preventDefault();
          void this.act(panel, record, 'approve', {});
        }
      });
    }
    const proven = record.state === 'review' && record.verdict === 'proven';
    const type = proven ? 'success' : NOTIFYING[record.state];
    const id = Notification.emit(noticeMessage(record), type, { autoClose: false, actions });
    this.shown.set(record.id, id);
  }

  private open(panel: NotebookPanel, id: string, fallback: number): void {
    this.app.shell.activateById(panel.id);
    const found = lastRecords(this.cells(panel)).get(id);
    const index = found ? found[1] : fallback;
    const notebook = panel.content;
    notebook.activeCellIndex = index;
    const cell = notebook.widgets[index];
    if (cell) {
      void notebook.scrollToCell(cell, 'start');
    }
  }

  /** An answer or approve: to the server's API, else (no such route) to the kernel. */
  private async act(
    panel: NotebookPanel,
    record: NotebookRecord,
    action: 'answer' | 'approve',
    body: Record<string, unknown>
  ): Promise<void> {
    const shown = this.shown.get(record.id);
    try {
      const settings = this.app.serviceManager.serverSettings;
      const url = URLExt.join(settings.baseUrl, 'delegate/api/tasks', record.id, action);
      const response = await ServerConnection.makeRequest(
        url,
        { method: 'POST', body: JSON.stringify(body) },
        settings
      );
      if (response.status === 404) {
        await this.inKernel(panel, record, action, body);
      } else if (!response.ok) {
        const text = await response.text();
        throw new Error(errorOf(text) || `${response.status} ${response.statusText}`);
      }
      if (shown) {
        Notification.dismiss(shown);
      }
    } catch (error) {
      Notification.error(`Task ${record.id}: ${(error as Error).message || error}`, {
        autoClose: false
      });
    }
  }

  private async inKernel(
    panel: NotebookPanel,
    record: NotebookRecord,
    action: 'answer' | 'approve',
    body: Record<string, unknown>
  ): Promise<void> {
    const kernel = panel.sessionContext.session?.kernel;
    if (!kernel) {
      throw new Error('no server route and no kernel to answer in: start the kernel');
    }
    const task = `__import__('jupyter_delegate').get_task(${py(record.id)}, ${py(record.repo)})`;
    const call =
      action === 'answer'
        ? `.answer(${py(body.request_id)}, ${body.allow ? 'True' : 'False'})`
        : '.approve()';
    const future = kernel.requestExecute({
      code: task + call,
      silent: true,
      store_history: false
    });
    const reply = await future.done;
    const content = reply.content as any;
    if (content.status !== 'ok') {
      throw new Error(content.evalue || content.ename || 'the kernel refused');
    }
  }
}

/** A string as a Python literal (JSON's escapes are Python's too). */
function py(value: unknown): string {
  return JSON.stringify(String(value ?? ''));
}

function errorOf(text: string): string {
  try {
    const parsed = JSON.parse(text);
    // our server's routes say {"error": ...}; jupyter_server's own errors {"message": ...}
    for (const key of ['error', 'message']) {
      if (typeof parsed?.[key] === 'string') {
        return parsed[key];
      }
    }
    return '';
  } catch {
    return text.slice(0, 200);
  }
}
