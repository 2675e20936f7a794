import fixture from './fixtures/merged-record.json';
import { describe, expect, it } from 'vitest';

import {
  MIME,
  WIDGET_MIME,
  cardModel,
  hasWidgetSibling,
  parseRecord,
  sidebarModel
} from '../src/model';

// A record written by compact_record() for the tutorial's task after approve (tutorial run).
const merged: any = fixture;

function withState(state: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...merged, state, ...extra };
}

describe('parseRecord', () => {
  it('reads a real record', () => {
    const record = parseRecord(merged)!;
    expect(record.id).toBe(merged.id);
    expect(record.state).toBe('merged');
    expect(record.checks[0].passed).toBe(true);
    expect(record.diffstat[0].file).toBe('shop/cart.py');
  });

  it('refuses what is not a task record', () => {
    expect(parseRecord(null)).toBeNull();
    expect(parseRecord('text')).toBeNull();
    expect(parseRecord([merged])).toBeNull();
    expect(parseRecord({ state: 'merged' })).toBeNull();
  });

  it('defaults every missing field of a cut or old record', () => {
    const record = parseRecord({ id: 'abc123' })!;
    expect(record.state).toBe('unknown');
    expect(record.checks).toEqual([]);
    expect(record.usage).toEqual({ cost_usd: 0, steps: 0 });
    expect(cardModel(record).label).toBe('abc123');
  });
});

describe('cardModel', () => {
  it('shows outcome, commits, diffstat, checks, cost and served model', () => {
    const card = cardModel(parseRecord(merged)!);
    expect(card.label).toBe('fix-discount');
    expect(card.goal).toContain('Fix the discount calculation');
    expect(card.base).toBe(merged.base_commit.slice(0, 10));
    expect(card.head).toBe(merged.head_commit.slice(0, 10));
    expect(card.merged).toBe(merged.merged_commit.slice(0, 10));
    expect(card.files).toEqual([{ file: 'shop/cart.py', added: '+1', removed: '−1' }]);
    expect([card.added, card.removed]).toEqual([1, 1]);
    expect(card.checks).toHaveLength(1);
    expect(card.checksPassed).toBe(1);
    expect(card.cost).toBe('$0.0144');
    expect(card.servedModel).toBe('claude-sonnet-4-6');
    expect(card.journalHead).toBe(merged.journal_head.slice(0, 12));
    expect(card.oneLine).toBe('fix-discount [merged] $0.0144, checks 1/1 passed');
  });

  it('counts the files a cut record left out and marks binary files', () => {
    const record = parseRecord(
      withState('review', {
        diffstat: [{ file: 'logo.png', added: null, removed: null }],
        diffstat_files: 40
      })
    )!;
    const card = cardModel(record);
    expect(card.filesTotal).toBe(40);
    expect(card.files[0]).toEqual({ file: 'logo.png', added: 'bin', removed: '' });
  });

  it('marks a cost whose price was guessed from the model family', () => {
    const record = parseRecord(
      withState('review', { price_guessed: true, served_models: ['claude-sonnet-9'] })
    )!;
    const card = cardModel(record);
    expect(card.cost).toBe('$0.0144 (price guessed from the model family)');
    expect(card.servedModel).toBe('claude-sonnet-9');
    expect(cardModel(parseRecord(merged)!).cost).toBe('$0.0144');
  });

  it('reports a failed check with its exit code', () => {
    const checks = [{ ...merged.checks[0], passed: false, exit_code: 1 }];
    const card = cardModel(parseRecord(withState('review', { checks }))!);
    expect(card.checks[0]).toMatchObject({ passed: false, detail: 'exit 1' });
    expect(card.oneLine).toContain('checks 0/1 passed');
  });
});

describe('sidebarModel', () => {
  const record = (id: string, state: string, cost: number, name?: string) => ({
    data: { [MIME]: { ...merged, id, state, name: name ?? id, usage: { cost_usd: cost, steps: 1 } } }
  });

  it('lists each task once with its last state and counts running and review', () => {
    const model = sidebarModel([
      [{ data: { 'text/plain': 'setup' } }],
      [{ data: { [WIDGET_MIME]: { model_id: 'x' } } }, record('a1', 'running', 0.01)],
      [record('b2', 'review', 0.5), record('c3', 'waiting', 0.1)],
      [],
      [record('a1', 'merged', 0.02)]
    ]);
    expect(model.tasks.map(t => [t.id, t.state, t.cellIndex])).toEqual([
      ['a1', 'merged', 4],
      ['b2', 'review', 2],
      ['c3', 'waiting', 2]
    ]);
    expect(model.running).toBe(1);
    expect(model.review).toBe(1);
    expect(model.totalCost).toBe('$0.6200');
  });

  it('ignores outputs without a usable record', () => {
    const model = sidebarModel([[{ data: { [MIME]: { state: 'running' } } }, { data: null }, {}]]);
    expect(model.tasks).toEqual([]);
    expect([model.running, model.review]).toEqual([0, 0]);
  });

  it('sees a widget view beside a record', () => {
    expect(hasWidgetSibling([record('a', 'running', 0)])).toBe(false);
    expect(hasWidgetSibling([{ data: { [WIDGET_MIME]: {} } }, record('a', 'running', 0)])).toBe(true);
  });
});
