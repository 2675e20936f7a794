import costs from './fixtures/costs.json';
import fixture from './fixtures/merged-record.json';
import { describe, expect, it } from 'vitest';

import { MIME, cardModel, formatCost, parseRecord, sidebarModel } from '../src/model';

// One cost figure everywhere: costs.json is also read by tests/test_live.py, which checks
// the kernel's `usd_text` (the live view, the board, the record's fallbacks) against it.
describe('one cost figure', () => {
  it('writes a cost by the rule the kernel uses', () => {
    for (const [usd, text] of costs as [number, string][]) {
      expect(formatCost(usd)).toBe(text);
    }
  });

  it('shows a running task the same cost in the card and the sidebar', () => {
    const data = { ...(fixture as any), state: 'running', usage: { cost_usd: 0.0093, steps: 3 } };
    const card = cardModel(parseRecord(data)!);
    const sidebar = sidebarModel([[{ data: { [MIME]: data } }]]);
    expect(card.cost).toBe('$0.0093');
    expect(sidebar.tasks[0].cost).toBe(card.cost);
    expect(sidebar.totalCost).toBe('$0.0093');
    expect(sidebar.running).toBe(1);
  });

  it('marks a guessed price in the sidebar as the board does', () => {
    const data = { ...(fixture as any), price_guessed: true, usage: { cost_usd: 0.5, steps: 1 } };
    const sidebar = sidebarModel([[{ data: { [MIME]: data } }]]);
    expect(sidebar.tasks[0].cost).toBe('~$0.5000');
    expect(cardModel(parseRecord(data)!).cost).toBe(
      '$0.5000 (price guessed from the model family)'
    );
  });
});
