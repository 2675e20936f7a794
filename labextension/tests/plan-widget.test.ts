// @vitest-environment jsdom
/**
 * The plan widget's front end (jupyter_delegate/notebook/static/plan.js, a plain anywidget
 * module) against a fake model: the draft is edited locally and sent whole to be saved
 * (validated by the kernel), a refused save keeps the edits, a saved one is replaced by
 * the kernel's spec, and "Insert as cell" asks the notebook by a `jd-insert-cell` event,
 * showing the YAML to copy where nobody answers.
 */
import { describe, expect, it } from 'vitest';

// @ts-expect-error: a plain ES module without types
import plan from '../../jupyter_delegate/notebook/static/plan.js';

type Handler = () => void;

class FakeModel {
  values: Record<string, unknown>;
  sent: Record<string, unknown>[] = [];
  private handlers: Record<string, Handler[]> = {};

  constructor(values: Record<string, unknown>) {
    this.values = values;
  }
  get(name: string): unknown {
    return this.values[name];
  }
  set(name: string, value: unknown): void {
    this.values[name] = value;
    for (const handler of this.handlers[`change:${name}`] || []) handler();
  }
  on(event: string, handler: Handler): void {
    (this.handlers[event] ||= []).push(handler);
  }
  off(event: string, handler: Handler): void {
    this.handlers[event] = (this.handlers[event] || []).filter(h => h !== handler);
  }
  send(content: Record<string, unknown>): void {
    this.sent.push(content);
  }
  save_changes(): void {}
}

const SPEC = {
  plan: 'Shapes',
  parallel: 2,
  subtasks: [
    { name: 'base', goal: 'Write base.txt', checks: ['test -f base.txt'] },
    { name: 'left', goal: 'Write left.txt', depends_on: ['base'] }
  ]
};

function draft(): { model: FakeModel; el: HTMLElement } {
  const model = new FakeModel({
    plan_id: 'p123abc',
    title: 'Shapes',
    state: 'draft',
    state_text: 'draft',
    guide: 'A draft: edit it below (Save edits), then Run plan.',
    cut_off: false,
    cost: '$0.0000',
    spec: JSON.parse(JSON.stringify(SPEC)),
    revision: 1,
    subtasks: [],
    graph: '<svg class="jdg"><g class="jdg-node" data-name="base" data-task=""></g></svg>',
    yaml: 'plan: Shapes\n',
    cell: '%%delegate-plan --repo .\nplan: Shapes\n',
    planner: {},
    integration: {},
    failure: {},
    errors: [],
    feedback: {},
    busy: ''
  });
  const el = document.createElement('div');
  document.body.append(el);
  plan.render({ model, el });
  return { model, el };
}

function type(el: HTMLElement, selector: string, value: string): void {
  const input = el.querySelector(selector) as HTMLInputElement;
  input.value = value;
  input.dispatchEvent(new Event('input'));
}

function click(el: HTMLElement, selector: string): void {
  (el.querySelector(selector) as HTMLElement).click();
}

describe('the plan widget', () => {
  it('edits the draft locally and sends it whole to be saved', () => {
    const { model, el } = draft();
    expect([...el.querySelectorAll('.jdp-editor .jdp-row')].map(r => (r as HTMLElement).dataset.name)).toEqual([
      'base',
      'left'
    ]);
    type(el, '.jdp-row[data-name="left"] .jdp-goal', 'Write left.txt twice');
    type(el, '.jdp-row[data-name="left"] .jdp-checks', 'test -f left.txt\n\n  pytest -q  ');
    expect(el.querySelector('.jdp-unsaved')!.textContent).toBe('unsaved edits');
    click(el, '.jdp-add');
    click(el, '.jdp-row[data-name="base"] .jdp-down'); // base after left now
    click(el, '.jdp-save');
    const saved = model.sent.at(-1)!;
    expect(saved.action).toBe('edit');
    const spec = saved.spec as typeof SPEC & { subtasks: Record<string, unknown>[] };
    expect(spec.subtasks.map(s => s.name)).toEqual(['left', 'base', 'step-3']);
    expect(spec.subtasks[0]).toEqual({
      name: 'left',
      goal: 'Write left.txt twice',
      checks: ['test -f left.txt', 'pytest -q'],
      depends_on: ['base']
    });
  });

  it('keeps the edits when the kernel refuses them, and takes its spec once saved', () => {
    const { model, el } = draft();
    type(el, '.jdp-row[data-name="base"] .jdp-depends', 'left');
    click(el, '.jdp-save');
    model.set('errors', ['the dependencies make a cycle: base -> left -> base']);
    model.set('feedback', { action: 'edit', text: 'The plan cannot run: 1 problem(s); nothing was saved.', error: true });
    expect(el.querySelector('.jdp-errors')!.textContent).toContain('cycle');
    expect((el.querySelector('.jdp-row[data-name="base"] .jdp-depends') as HTMLInputElement).value).toBe('left');
    expect(el.querySelector('.jdp-feedback')!.classList.contains('jdp-error')).toBe(true);

    type(el, '.jdp-row[data-name="base"] .jdp-depends', '');
    type(el, '.jdp-row[data-name="left"] .jdp-goal', 'Write left.txt with care');
    click(el, '.jdp-save');
    const kernelSpec = JSON.parse(JSON.stringify(SPEC));
    kernelSpec.subtasks[1].goal = 'Write left.txt with care';
    model.set('spec', kernelSpec);
    model.set('revision', 2);
    model.set('errors', []);
    model.set('feedback', { action: 'edit', text: 'Saved: 2 subtasks.', error: false });
    expect(el.querySelector('.jdp-unsaved')!.textContent).toBe('');
    expect((el.querySelector('.jdp-row[data-name="left"] .jdp-goal') as HTMLTextAreaElement).value).toBe(
      'Write left.txt with care'
    );
    expect(el.querySelector('.jdp-feedback')!.textContent).toBe('Saved: 2 subtasks.');
  });

  it('runs with its unsaved edits, and shows each subtask once the plan runs', () => {
    const { model, el } = draft();
    type(el, '.jdp-row[data-name="base"] .jdp-goal', 'Write base.txt now');
    click(el, '.jdp-run');
    expect(model.sent.at(-1)!.action).toBe('run');
    expect((model.sent.at(-1)!.spec as typeof SPEC).subtasks[0].goal).toBe('Write base.txt now');
    model.set('subtasks', [
      { name: 'base', state: 'review', task: 'abc123', checks: '1/1 passed', cost_usd: 0.01, colour: '#7c3aed', goal: 'g', why: '', stale: '' },
      { name: 'left', state: 'failed', task: 'def456', checks: '', cost_usd: 0, colour: '#dc2626', goal: 'g', why: 'boom', stale: '' }
    ]);
    model.set('state', 'running');
    expect(el.querySelector('.jdp-editor')).toBeNull();
    click(el, '.jdp-row[data-name="base"] .jdp-approve-task');
    expect(model.sent.at(-1)).toEqual({ action: 'approve_task', name: 'base' });
    click(el, '.jdp-row[data-name="left"] .jdp-restart');
    expect(model.sent.at(-1)).toEqual({ action: 'restart', name: 'left' });
    // Cancel asks first
    click(el, '.jdp-cancel');
    expect(model.sent.at(-1)!.action).toBe('restart');
    click(el, '.jdp-cancel-confirm');
    expect(model.sent.at(-1)).toEqual({ action: 'cancel' });
  });

  it('asks the notebook for a cell, and shows the YAML to copy where nobody answers', () => {
    const { el } = draft();
    click(el, '.jdp-insert');
    expect(el.querySelector('.jdp-yaml')!.textContent).toBe('%%delegate-plan --repo .\nplan: Shapes\n');

    const answered = draft();
    const asked: string[] = [];
    answered.el.parentElement!.addEventListener('jd-insert-cell', event => {
      const detail = (event as CustomEvent).detail;
      asked.push(detail.source);
      event.preventDefault();
      detail.done('');
    });
    click(answered.el, '.jdp-insert');
    expect(asked).toEqual(['%%delegate-plan --repo .\nplan: Shapes\n']);
    expect(answered.el.querySelector('.jdp-yaml')).toBeNull();
    expect(answered.el.querySelector('.jdp-feedback')!.textContent).toBe(
      'A %%delegate-plan cell with this plan is below.'
    );
  });
});
