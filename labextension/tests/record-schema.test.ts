/**
 * The front end against the record's contract: the JSON schema of Python's `NotebookRecord`
 * (../schema/, kept equal to the type by tests/test_labextension.py) and records Python
 * wrote for real tasks in every state (fixtures/python-records.json, checked against the
 * schema by the same Python test).
 */
import schemaJson from '../schema/notebook-record.schema.json';
import recordsJson from './fixtures/python-records.json';
import { describe, expect, it } from 'vitest';

import {
  REVIEW_STATES,
  RUNNING_STATES,
  TERMINAL_STATES,
  cardModel,
  parseRecord
} from '../src/model';

interface Schema {
  type?: string | string[];
  enum?: unknown[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean;
  items?: Schema;
  anyOf?: Schema[];
}

const schema = schemaJson as Schema;
const records = recordsJson as Record<string, unknown>[];

// Fields Python writes that the front end does not show (a new field must be read or
// named here).
const NOT_SHOWN = new Set([
  'repo',
  'sandbox',
  'proven',
  'transient',
  'forced',
  'forced_reasons',
  'created',
  'check_commands',
  'version',
  'repo_relative',
  'group' // the plan or attempt group: shown by their own views (plan_view.py, attempts_view.py)
]);

function jsonType(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  if (Array.isArray(value)) {
    return 'array';
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? 'integer' : 'number';
  }
  return typeof value;
}

/** What is wrong with `value` under `schema` (the part of JSON schema the kernel writes);
 * `partial`: a key may be missing. */
function problems(value: unknown, s: Schema, path = '$', partial = false): string[] {
  if (s.anyOf) {
    const fits = s.anyOf.some(one => problems(value, one, path, partial).length === 0);
    return fits ? [] : [`${path}: fits none of anyOf`];
  }
  const type = jsonType(value);
  const allowed = s.type === undefined ? [] : Array.isArray(s.type) ? s.type : [s.type];
  const fits = allowed.some(t => t === type || (t === 'number' && type === 'integer'));
  if (allowed.length && !fits) {
    return [`${path}: ${type}, not ${allowed.join(' or ')}`];
  }
  if (s.enum && !s.enum.includes(value)) {
    return [`${path}: ${String(value)} is none of ${s.enum.join(', ')}`];
  }
  if (type === 'array' && s.items) {
    return (value as unknown[]).flatMap((v, i) => problems(v, s.items!, `${path}[${i}]`, partial));
  }
  if (type !== 'object' || !s.properties) {
    return [];
  }
  const object = value as Record<string, unknown>;
  const found: string[] = [];
  if (!partial) {
    for (const key of s.required ?? []) {
      if (!(key in object)) {
        found.push(`${path}.${key}: missing`);
      }
    }
  }
  for (const [key, v] of Object.entries(object)) {
    const property = s.properties[key];
    if (property) {
      found.push(...problems(v, property, `${path}.${key}`, partial));
    } else if (s.additionalProperties === false) {
      found.push(`${path}.${key}: not in the schema`);
    }
  }
  return found;
}

/** `value` without its undefined fields (an optional field the record did not have). */
function defined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

describe('the notebook record schema', () => {
  it('is met by every record Python wrote', () => {
    expect(records.length).toBeGreaterThan(3);
    for (const record of records) {
      expect(problems(record, schema)).toEqual([]);
    }
  });

  it('has every field parseRecord reads, with the type parseRecord gives it', () => {
    for (const record of records) {
      expect(problems(defined(parseRecord(record)!), schema, '$', true)).toEqual([]);
    }
  });

  it('lists only fields the front end reads or knowingly does not show', () => {
    const read = new Set(Object.keys(parseRecord({ id: 'every-field' })!));
    const written = Object.keys(schema.properties!);
    expect(written.filter(key => !read.has(key) && !NOT_SHOWN.has(key))).toEqual([]);
    expect([...NOT_SHOWN].filter(key => !written.includes(key))).toEqual([]);
  });

  it('names every state the front end groups', () => {
    const states = schema.properties!.state.enum!;
    for (const state of [...RUNNING_STATES, ...REVIEW_STATES, ...TERMINAL_STATES]) {
      expect(states).toContain(state);
    }
  });
});

describe('parseRecord on records Python wrote', () => {
  it('keeps every field it reads as Python wrote it', () => {
    for (const record of records) {
      expect(record).toMatchObject(defined(parseRecord(record)!));
    }
  });

  it('gives a card for a record in every state', () => {
    const states = records.map(r => cardModel(parseRecord(r)!).state);
    expect(new Set(states)).toEqual(new Set(records.map(r => r.state)));
  });
});
