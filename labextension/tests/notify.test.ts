import fixture from './fixtures/merged-record.json';
import { describe, expect, it } from 'vitest';

import { MIME, NEEDS_YOU, lastRecords, noticeKey, noticeMessage, parseRecord } from '../src/model';

// A record written by compact_record() (the tutorial's task after approve), in other states.
const merged: any = fixture;
const question = { request_id: 'r1', tool: 'bash', command: 'ls -la shop', reason: 'asks' };

function record(state: string, extra: Record<string, unknown> = {}) {
  return parseRecord({ ...merged, name: 'ask-me', state, ...extra })!;
}

describe('notices', () => {
  it('tell of a question with its command, a review with its verdict, a failure with its error', () => {
    expect(noticeMessage(record('waiting', { question }))).toBe('ask-me asks to run bash: ls -la shop');
    expect(noticeMessage(record('review', { verdict: 'checks fail' }))).toBe(
      'ask-me is ready for review (checks fail)'
    );
    expect(noticeMessage(record('failed', { error: 'the API key was refused' }))).toBe(
      'ask-me failed: the API key was refused'
    );
    expect(noticeMessage(record('interrupted'))).toContain('was interrupted');
  });

  it('notify once per state and question, and never of running or merged tasks', () => {
    expect(noticeKey(record('running'))).toBe('');
    expect(noticeKey(record('merged'))).toBe('');
    const first = noticeKey(record('waiting', { question }));
    const second = noticeKey(record('waiting', { question: { ...question, request_id: 'r2' } }));
    expect(first).not.toBe('');
    expect(second).not.toBe(first);
    expect(noticeKey(record('waiting', { question }))).toBe(first);
  });

  it('take the last record of each task, with its cell', () => {
    const cells = [
      [{ data: { [MIME]: { ...merged, state: 'waiting' } } }],
      [{ data: { 'text/plain': 'x' } }],
      [{ data: { [MIME]: { ...merged, state: 'review' } } }]
    ];
    const found = lastRecords(cells);
    expect(found.size).toBe(1);
    const [last, cell] = found.get(merged.id)!;
    expect([last.state, cell]).toEqual(['review', 2]);
    expect(NEEDS_YOU.has(last.state)).toBe(true);
    expect(NEEDS_YOU.has('running')).toBe(false);
  });
});
