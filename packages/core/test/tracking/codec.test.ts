import { describe, it, expect } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeEvent, encodeEvent, fromJsonSafe, parseEventLog, readEventLog, toJsonSafe } from '../../src/tracking/codec.js';
import type { TrackerEvent } from '../../src/tracking/events.js';

describe('event JSONL codec', () => {
  it('round-trips what JSON cannot hold: NaN, infinities, bytes, bigints', () => {
    const event: TrackerEvent = {
      type: 'metrics',
      time: 1700000000.25,
      rank: 1,
      step: 7,
      values: { loss: NaN, up: Infinity, down: -Infinity, big: 2n ** 70n, ok: 0.5, text: 'NaN', group: { a: 1, b: NaN } },
    };
    const line = encodeEvent(event);
    expect(line).not.toContain('\n');
    expect(JSON.parse(line).values.loss).toEqual({ $f: 'NaN' });
    const back = decodeEvent(line) as typeof event;
    expect(back.values.loss).toBeNaN();
    expect(back.values.up).toBe(Infinity);
    expect(back.values.down).toBe(-Infinity);
    expect(back.values.big).toBe(2n ** 70n);
    expect(back.values.text).toBe('NaN');
    expect((back.values.group as Record<string, number>).b).toBeNaN();
    expect(back.step).toBe(7);
    expect(back.time).toBe(1700000000.25);
  });

  it('keeps image bytes exactly (base64) and user keys that look like tags', () => {
    const data = new Uint8Array([0, 1, 2, 250, 255]);
    const event: TrackerEvent = { type: 'images', time: 1, rank: 0, images: { img: { format: 'raw', width: 5, height: 1, channels: 1, data } } };
    const back = decodeEvent(encodeEvent(event)) as typeof event;
    const img = back.images.img;
    expect(img.data).toBeInstanceOf(Uint8Array);
    expect([...img.data]).toEqual([0, 1, 2, 250, 255]);
    const tricky = { $f: 'NaN', $$x: 1, normal: 2 };
    expect(fromJsonSafe(JSON.parse(JSON.stringify(toJsonSafe(tricky))))).toEqual(tricky);
    const single = { $f: 'NaN' };
    expect(fromJsonSafe(JSON.parse(JSON.stringify(toJsonSafe(single))))).toEqual(single);
  });

  it('marks values that cannot be stored instead of dropping the key', () => {
    const cyc: Record<string, unknown> = { a: 1 };
    cyc.self = cyc;
    const safe = toJsonSafe({ u: undefined, f: () => 1, cyc, f32: new Float32Array([1.5, 2]), arr: [undefined] }) as Record<string, unknown>;
    expect('u' in safe).toBe(false);
    expect(safe.arr).toEqual([{ $unrepresentable: 'undefined' }]);
    expect(safe.f).toEqual({ $unrepresentable: 'function' });
    expect((safe.cyc as Record<string, unknown>).self).toEqual({ $unrepresentable: 'cycle' });
    expect(safe.f32).toEqual([1.5, 2]);
  });

  it('rejects lines that are not events with a message saying why', () => {
    expect(() => decodeEvent('not json')).toThrow(/not a JSON line/);
    expect(() => decodeEvent('[1]')).toThrow(/not a JSON object/);
    expect(() => decodeEvent('{"type":"bogus","time":1,"rank":0}')).toThrow(/"bogus" is not one of start, config, metrics/);
    expect(() => decodeEvent('{"type":"metrics","values":{}}')).toThrow(/without numeric "time" and "rank"/);
  });

  it('parses complete lines only, reports bad lines, and resumes from the consumed offset', () => {
    const a = encodeEvent({ type: 'metrics', time: 1, rank: 0, step: 1, values: { x: 1 } });
    const b = encodeEvent({ type: 'metrics', time: 2, rank: 0, step: 2, values: { x: 2 } });
    const text = `${a}\ngarbage\n${b.slice(0, 10)}`;
    const first = parseEventLog(text);
    expect(first.events.map((e) => (e as { step?: number }).step)).toEqual([1]);
    expect(first.errors).toEqual([{ line: 2, message: expect.stringMatching(/not a JSON line/) }]);
    expect(first.consumed).toBe(Buffer.byteLength(`${a}\ngarbage\n`));
    const full = `${text}${b.slice(10)}\n`;
    const second = parseEventLog(Buffer.from(full).subarray(first.consumed), 1 + first.lines);
    expect(second.events.map((e) => (e as { step?: number }).step)).toEqual([2]);
    expect(second.errors).toEqual([]);
  });

  it('readEventLog keeps a final line without its newline (a run that died mid-write)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'codec-'));
    const p = join(dir, 'run.jsonl');
    const a = encodeEvent({ type: 'config', time: 1, rank: 0, values: { lr: 0.1 } });
    const b = encodeEvent({ type: 'metrics', time: 2, rank: 0, values: { loss: 3 } });
    writeFileSync(p, `${a}\n${b}`);
    const { events, errors } = readEventLog(p);
    expect(errors).toEqual([]);
    expect(events.map((e) => e.type)).toEqual(['config', 'metrics']);
  });
});
