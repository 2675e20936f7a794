/**
 * The task record as the front end reads it, and the plain views of it (card, sidebar
 * list). No JupyterLab import here: this module is the record -> model logic, tested with
 * vitest alone. The record is written by `jupyter_delegate.notebook.record.compact_record`;
 * its type there, `NotebookRecord`, has its JSON schema in ../schema/, and
 * tests/record-schema.test.ts checks `parseRecord` against it and against records Python
 * made.
 */

export const MIME = 'application/vnd.jupyter-delegate.task+json';
export const WIDGET_MIME = 'application/vnd.jupyter.widget-view+json';

export interface CheckRecord {
  command: string;
  exit_code: number;
  passed: boolean;
  duration_s: number;
  /** A failing check's last lines that say why (chosen by the kernel); '' when it passed. */
  failure_tail: string;
  /** The environment problem a failing check's output shows, with the fix; '' when none. */
  hint: string;
}

export interface DiffstatRow {
  file: string;
  added: number | null;
  removed: number | null;
}

/** The part of a notebook record the front end reads (Python's `NotebookRecord`). */
export interface NotebookRecord {
  id: string;
  title: string;
  name: string | null;
  outcome: { goal: string; checks: string[]; scope: string[] };
  state: string;
  /** The repository's path on the kernel's machine. */
  repo: string;
  branch: string;
  /** null: the task started from a detached commit. */
  base_branch: string | null;
  base_commit: string;
  head_commit: string | null;
  merged_commit: string | null;
  model: string;
  served_models: string[];
  /** The cost rests on a price guessed from the model family (false in older records). */
  price_guessed: boolean;
  /** In review: "proven", "checks fail", "stopped by budget", "no checks" or "no changes"
   * (null outside review and in older records). */
  verdict: string | null;
  summary: string;
  checks: CheckRecord[];
  /** What the checks ran with: the environment's items and variables (kernel's words). */
  ran_with: string[];
  usage: { cost_usd: number; steps: number };
  flags: string[];
  /** Who decided what: "approved by alice via the Jupyter server" (older records: none). */
  decisions: string[];
  error: string;
  journal_head: string | null;
  diffstat: DiffstatRow[];
  diffstat_files?: number;
  skills_used: string[];
  preferences: string[];
  preferences_count?: number;
  /** From round 2 of review on: the round the task is in (absent in round 1). */
  review_round?: number;
  /** The reviewer's own commits on the task's branch ("fix it yourself"). */
  human_edits?: HumanEditRecord[];
  /** While it waits: the permission question it asks (absent otherwise). */
  question?: QuestionRecord;
}

export interface QuestionRecord {
  request_id: string;
  tool: string;
  /** The command, path or pattern asked about. */
  command: string;
  reason: string;
}

export interface HumanEditRecord {
  commit: string;
  files: string[];
  message: string;
}

/** States in which the agent is at work (or about to be, or waiting on a permission). */
export const RUNNING_STATES = new Set(['queued', 'running', 'waiting']);
/** States that need the human's decision on the result. */
export const REVIEW_STATES = new Set(['review']);
export const TERMINAL_STATES = new Set(['merged', 'rejected', 'failed', 'cancelled']);

function str(value: unknown, fallback = ''): string {
  return typeof value === 'string' ? value : fallback;
}

function num(value: unknown, fallback = 0): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

function list<T>(value: unknown, item: (v: any) => T | null): T[] {
  if (!Array.isArray(value)) {
    return [];
  }
  return value.map(item).filter((v): v is T => v !== null);
}

/**
 * A record from untrusted notebook data, every field defaulted; null when it is not a
 * task record at all (no id). Rendering never throws on an old or cut record.
 */
export function parseRecord(data: unknown): NotebookRecord | null {
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    return null;
  }
  const r = data as Record<string, any>;
  if (typeof r.id !== 'string' || !r.id) {
    return null;
  }
  const outcome = r.outcome && typeof r.outcome === 'object' ? r.outcome : {};
  const usage = r.usage && typeof r.usage === 'object' ? r.usage : {};
  return {
    id: r.id,
    title: str(r.title),
    name: typeof r.name === 'string' && r.name ? r.name : null,
    outcome: {
      goal: str(outcome.goal),
      checks: list(outcome.checks, c => (typeof c === 'string' ? c : null)),
      scope: list(outcome.scope, s => (typeof s === 'string' ? s : null))
    },
    state: str(r.state, 'unknown'),
    repo: str(r.repo),
    branch: str(r.branch),
    base_branch: typeof r.base_branch === 'string' ? r.base_branch : null,
    base_commit: str(r.base_commit),
    head_commit: typeof r.head_commit === 'string' ? r.head_commit : null,
    merged_commit: typeof r.merged_commit === 'string' ? r.merged_commit : null,
    model: str(r.model),
    served_models: list(r.served_models, m => (typeof m === 'string' ? m : null)),
    price_guessed: r.price_guessed === true,
    verdict: typeof r.verdict === 'string' ? r.verdict : null,
    summary: str(r.summary),
    checks: list(r.checks, c =>
      c && typeof c === 'object'
        ? {
            command: str(c.command),
            exit_code: num(c.exit_code, -1),
            passed: c.passed === true,
            duration_s: num(c.duration_s),
            failure_tail: str(c.failure_tail),
            hint: str(c.hint)
          }
        : null
    ),
    usage: { cost_usd: num(usage.cost_usd), steps: num(usage.steps) },
    flags: list(r.flags, f => (typeof f === 'string' ? f : null)),
    decisions: list(r.decisions, d => (typeof d === 'string' ? d : null)),
    error: str(r.error),
    journal_head: typeof r.journal_head === 'string' ? r.journal_head : null,
    diffstat: list(r.diffstat, d =>
      d && typeof d === 'object' && typeof d.file === 'string'
        ? {
            file: d.file,
            added: typeof d.added === 'number' ? d.added : null,
            removed: typeof d.removed === 'number' ? d.removed : null
          }
        : null
    ),
    diffstat_files: typeof r.diffstat_files === 'number' ? r.diffstat_files : undefined,
    skills_used: list(r.skills_used, s => (typeof s === 'string' ? s : null)),
    preferences: list(r.preferences, p => (typeof p === 'string' ? p : null)),
    preferences_count: typeof r.preferences_count === 'number' ? r.preferences_count : undefined,
    review_round: typeof r.review_round === 'number' ? r.review_round : undefined,
    human_edits: Array.isArray(r.human_edits)
      ? list(r.human_edits, e =>
          e && typeof e === 'object' && typeof e.commit === 'string'
            ? {
                commit: e.commit,
                files: list(e.files, f => (typeof f === 'string' ? f : null)),
                message: str(e.message)
              }
            : null
        )
      : undefined,
    ran_with: list(r.ran_with, w => (typeof w === 'string' ? w : null)),
    question:
      r.question && typeof r.question === 'object' && typeof r.question.request_id === 'string'
        ? {
            request_id: r.question.request_id,
            tool: str(r.question.tool),
            command: str(r.question.command),
            reason: str(r.question.reason)
          }
        : undefined
  };
}

export function shortCommit(commit: string | null | undefined): string {
  return commit ? commit.slice(0, 10) : '';
}

/** A cost as every view says it ($0.0312, $12.50): the same rule as the kernel's
 * `jupyter_delegate.engine.model.usd_text` (the live view, the board). */
export function formatCost(usd: number): string {
  return `$${usd.toFixed(usd < 1 ? 4 : 2)}`;
}

/** What the kernel's review says of a cost whose price was guessed (engine/model.py). */
export const PRICE_GUESSED = 'price guessed from the model family';

/** What the card shows, every string ready to display. */
export interface CardModel {
  id: string;
  label: string;
  state: string;
  /** Why a task in review is not proven, when it is not ("checks fail"); "" otherwise. */
  verdict: string;
  goal: string;
  branch: string;
  baseBranch: string;
  base: string;
  head: string;
  merged: string;
  files: { file: string; added: string; removed: string }[];
  filesTotal: number;
  added: number;
  removed: number;
  /** `tail`: a failing check's last lines; `hint`: the environment problem they show;
   * `seeAll`: the magic that prints all of it. */
  checks: {
    command: string;
    passed: boolean;
    detail: string;
    tail: string;
    hint: string;
    seeAll: string;
  }[];
  checksPassed: number;
  /** What the checks ran with (the user's environment), one line each. */
  ranWith: string[];
  summary: string;
  error: string;
  flags: string[];
  decisions: string[];
  cost: string;
  steps: number;
  servedModel: string;
  journalHead: string;
  oneLine: string;
  skillsUsed: string;
  preferences: string[];
  preferencesTotal: number;
}

/** Why a task in review is not proven ("checks fail", "no changes"...), "" when it is, or
 * when it is not in review: what the card and the sidebar show beside the badge. */
export function unprovenVerdict(record: NotebookRecord): string {
  return record.state === 'review' && record.verdict && record.verdict !== 'proven'
    ? record.verdict
    : '';
}

export function cardModel(record: NotebookRecord): CardModel {
  const added = record.diffstat.reduce((n, d) => n + (d.added ?? 0), 0);
  const removed = record.diffstat.reduce((n, d) => n + (d.removed ?? 0), 0);
  const checksPassed = record.checks.filter(c => c.passed).length;
  const label = record.name || record.title || record.id;
  const cost =
    formatCost(record.usage.cost_usd) + (record.price_guessed ? ` (${PRICE_GUESSED})` : '');
  const servedModel = record.served_models.join(', ') || record.model;
  const checks =
    record.checks.length > 0 ? `, checks ${checksPassed}/${record.checks.length} passed` : '';
  return {
    id: record.id,
    label,
    state: record.state,
    verdict: unprovenVerdict(record),
    goal: record.outcome.goal || record.title,
    branch: record.branch,
    baseBranch: record.base_branch ?? '',
    base: shortCommit(record.base_commit),
    head: shortCommit(record.head_commit),
    merged: shortCommit(record.merged_commit),
    files: record.diffstat.map(d => ({
      file: d.file,
      added: d.added === null ? 'bin' : `+${d.added}`,
      removed: d.removed === null ? '' : `−${d.removed}`
    })),
    filesTotal: record.diffstat_files ?? record.diffstat.length,
    added,
    removed,
    checks: record.checks.map((c, i) => ({
      command: c.command,
      passed: c.passed,
      detail: c.passed ? `${c.duration_s.toFixed(1)} s` : `exit ${c.exit_code}`,
      tail: c.passed ? '' : c.failure_tail,
      hint: c.passed ? '' : c.hint,
      seeAll: c.passed ? '' : `%delegate checks ${record.id} ${i + 1}`
    })),
    checksPassed,
    ranWith: record.ran_with,
    summary: record.summary,
    error: record.error,
    flags: record.flags,
    decisions: record.decisions,
    cost,
    steps: record.usage.steps,
    servedModel,
    journalHead: record.journal_head ? record.journal_head.slice(0, 12) : '',
    oneLine: `${label} [${record.state}] ${cost}${checks}`,
    skillsUsed: record.skills_used.join(', '),
    preferences: record.preferences,
    preferencesTotal: record.preferences_count ?? record.preferences.length
  };
}

/** One output of a cell, as both the notebook model and nbformat JSON present it. */
export interface OutputLike {
  data?: Record<string, unknown> | null;
}

export interface SidebarTask {
  id: string;
  label: string;
  state: string;
  /** As on the card: why a task in review is not proven; "" otherwise. */
  verdict: string;
  cost: string;
  costUsd: number;
  cellIndex: number;
}

export interface SidebarModel {
  tasks: SidebarTask[];
  running: number;
  review: number;
  totalCost: string;
}

/**
 * Every task of a notebook from its cells' outputs: one row per task id, in the order the
 * tasks first appear, with the state and cost of the task's last record and the index of
 * the cell that holds it.
 */
export function sidebarModel(cells: OutputLike[][]): SidebarModel {
  const byId = new Map<string, SidebarTask>();
  cells.forEach((outputs, cellIndex) => {
    for (const output of outputs) {
      const record = parseRecord(output.data?.[MIME]);
      if (!record) {
        continue;
      }
      byId.set(record.id, {
        id: record.id,
        label: record.name || record.title || record.id,
        state: record.state,
        verdict: unprovenVerdict(record),
        // marked as the board marks it when the price was guessed from the model family
        cost: (record.price_guessed ? '~' : '') + formatCost(record.usage.cost_usd),
        costUsd: record.usage.cost_usd,
        cellIndex
      });
    }
  });
  const tasks = [...byId.values()];
  const total = tasks.reduce((n, t) => n + t.costUsd, 0);
  return {
    tasks,
    running: tasks.filter(t => RUNNING_STATES.has(t.state)).length,
    review: tasks.filter(t => REVIEW_STATES.has(t.state)).length,
    totalCost: formatCost(total)
  };
}

/** True when the outputs beside a record include a widget view (the live task view). */
export function hasWidgetSibling(outputs: OutputLike[]): boolean {
  return outputs.some(o => !!o.data && WIDGET_MIME in o.data);
}

// -- notices (notify.ts): which records notify, what they say, how many need you ----------

/** States a JupyterLab notification tells of. */
export const NOTIFYING_STATES = new Set(['waiting', 'review', 'failed', 'interrupted']);

/** States in which a task needs you: the bell counts them. */
export const NEEDS_YOU = new Set(['waiting', 'review']);

/** The last record of each task in a notebook's cells, with the index of its cell. */
export function lastRecords(cells: OutputLike[][]): Map<string, [NotebookRecord, number]> {
  const found = new Map<string, [NotebookRecord, number]>();
  cells.forEach((outputs, index) => {
    for (const output of outputs) {
      const record = parseRecord(output.data?.[MIME]);
      if (record) {
        found.set(record.id, [record, index]);
      }
    }
  });
  return found;
}

/** What a record is notified as: one key per state (and question); '' when nothing. */
export function noticeKey(record: NotebookRecord): string {
  if (!NOTIFYING_STATES.has(record.state)) {
    return '';
  }
  return [record.state, record.question?.request_id ?? '', record.verdict ?? ''].join('|');
}

/** The notification's message for a record (JupyterLab cuts it at 140 characters). */
export function noticeMessage(record: NotebookRecord): string {
  const label = record.name || record.title || record.id;
  switch (record.state) {
    case 'waiting':
      return record.question
        ? `${label} asks to run ${record.question.tool}: ${record.question.command}`
        : `${label} waits for your answer`;
    case 'review':
      return `${label} is ready for review (${record.verdict ?? 'no verdict'})`;
    case 'failed':
      return `${label} failed: ${record.error || 'see its card'}`;
    default:
      return `${label} was interrupted: Resume continues it`;
  }
}
