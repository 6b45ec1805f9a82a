import { describe, it, expect } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { readEventLog, type TrackerEvent } from '@accelerate/core';
import { TrackerHub, TrackerRegistry } from '@accelerate/core/internal';
import { JsonlTracker } from '../../src/jsonl.js';
import { CsvTracker, csvField, parseCsv } from '../../src/csv.js';
import { builtinTrackers } from '../../src/index.js';
import { init, tempDir } from '../helpers.js';

describe('JsonlTracker', () => {
  it('writes one line per event through the hub, replayable exactly, including NaN and bad values', async () => {
    const dir = tempDir('jsonl');
    const warnings: string[] = [];
    const hub = new TrackerHub({ logWith: ['jsonl'], loggingDir: dir, warn: (m) => warnings.push(m), registry: new TrackerRegistry(), loadBuiltins: async () => builtinTrackers });
    await hub.initTrackers('run1', { lr: 0.001, model: { layers: 2 } });
    await hub.log({ loss: 0.5, acc: 0.25 }, 1);
    await hub.log({ loss: NaN, weird: [1, 2] }, 2);
    await hub.logText({ sample: 'hello, "world"\nline 2' }, 2);
    await hub.logImages({ img: { data: new Uint8Array([0, 255, 0, 255]), width: 2, height: 2 } }, 3);
    await hub.logHistograms({ w: [1, 2, 3, 4] }, 3, 2);
    await hub.endTraining();
    const path = join(dir, 'run1', 'events.jsonl');
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(8);
    const { events, errors } = readEventLog(path);
    expect(errors).toEqual([]);
    expect(events.map((e) => e.type)).toEqual(['start', 'config', 'metrics', 'metrics', 'text', 'images', 'histograms', 'finish']);
    expect(events[1]).toMatchObject({ type: 'config', values: { lr: 0.001, model: { layers: 2 } } });
    expect(events[2]).toMatchObject({ values: { loss: 0.5, acc: 0.25 }, step: 1, rank: 0 });
    const bad = events[3] as Extract<TrackerEvent, { type: 'metrics' }>;
    expect(bad.values.loss).toBeNaN();
    expect(bad.values.weird).toEqual([1, 2]);
    expect((events[4] as Extract<TrackerEvent, { type: 'text' }>).values.sample).toBe('hello, "world"\nline 2');
    const img = (events[5] as Extract<TrackerEvent, { type: 'images' }>).images.img;
    expect(img).toEqual({ format: 'raw', width: 2, height: 2, channels: 1, data: new Uint8Array([0, 255, 0, 255]) });
    expect((events[6] as Extract<TrackerEvent, { type: 'histograms' }>).values.w).toEqual({ min: 1, max: 4, num: 4, sum: 10, sumSquares: 30, bucketLimits: [2.5, 4], bucketCounts: [2, 2] });
    expect(warnings).toHaveLength(2); // NaN loss, array
  });

  it('appends a resumed run to the same file, and writes rank files only with allRanks', () => {
    const dir = tempDir('jsonl2');
    for (let session = 0; session < 2; session++) {
      const t = new JsonlTracker(init(dir, 'p'));
      t.start();
      t.log({ x: session }, session);
      t.finish();
    }
    expect(readEventLog(join(dir, 'p', 'events.jsonl')).events.map((e) => (e as { step?: number }).step)).toEqual([0, 1]);
    expect(new JsonlTracker(init(dir, 'p', {}, 1)).mainProcessOnly).toBe(true);
    const r1 = new JsonlTracker(init(dir, 'p', { allRanks: true }, 1));
    expect(r1.mainProcessOnly).toBe(false);
    expect(r1.path).toBe(join(dir, 'p', 'events.rank1.jsonl'));
  });

  it('runs on every rank through the hub with allRanks, and on rank 0 only without', async () => {
    const dir = tempDir('jsonl3');
    for (const [rank, allRanks] of [[1, true], [2, false]] as const) {
      const hub = new TrackerHub({ logWith: ['jsonl'], loggingDir: dir, isMainProcess: () => false, processIndex: () => rank, registry: new TrackerRegistry(), loadBuiltins: async () => builtinTrackers });
      await hub.initTrackers('p', {}, { jsonl: { allRanks } });
      await hub.log({ loss: rank }, 1);
      await hub.endTraining();
    }
    expect(readdirSync(join(dir, 'p'))).toEqual(['events.rank1.jsonl']);
    const ev = readEventLog(join(dir, 'p', 'events.rank1.jsonl')).events.find((e) => e.type === 'metrics');
    expect(ev).toMatchObject({ rank: 1, values: { loss: 1 } });
  });
});

describe('CsvTracker', () => {
  it('writes a wide table that csv-parse reads back exactly, widening the header when new metrics appear', async () => {
    const dir = tempDir('csv');
    const hub = new TrackerHub({ logWith: ['csv'], loggingDir: dir, eventLog: false, registry: new TrackerRegistry(), loadBuiltins: async () => builtinTrackers, warn: () => {} });
    await hub.initTrackers('p', { lr: 0.1 });
    await hub.log({ loss: 1.5, note: 'a,b' }, 0);
    await hub.log({ loss: 0.1 + 0.2, acc: { train: 0.5, val: 0.25 } }, 1);
    await hub.log({ loss: NaN, flag: true, quote: 'say "hi"\nbye' }, 2);
    await hub.endTraining();
    const text = readFileSync(join(dir, 'p', 'metrics.csv'), 'utf8');
    const rows = parse(text, { columns: true }) as Array<Record<string, string>>;
    expect(Object.keys(rows[0])).toEqual(['step', 'time', 'rank', 'loss', 'note', 'acc/train', 'acc/val', 'flag', 'quote']);
    expect(rows.map((r) => r.step)).toEqual(['0', '1', '2']);
    expect(rows.map((r) => r.loss)).toEqual(['1.5', String(0.1 + 0.2), '']);
    expect(Number(rows[1].loss)).toBe(0.1 + 0.2);
    expect(rows[0].note).toBe('a,b');
    expect([rows[0]['acc/train'], rows[1]['acc/train'], rows[1]['acc/val']]).toEqual(['', '0.5', '0.25']);
    expect(rows[2].flag).toBe('true');
    expect(rows[2].quote).toBe('say "hi"\nbye');
    expect(rows.every((r) => Number(r.time) > 1.6e9 && r.rank === '0')).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, 'p', 'hparams.json'), 'utf8'))).toEqual({ lr: 0.1 });
    // Our own parser agrees with csv-parse on the same file.
    expect(parseCsv(text)).toEqual(parse(text));
  });

  it('csvField quotes only what needs it', () => {
    expect(['a', 'a,b', 'q"', ' x', 'l\nm', 3, undefined].map(csvField)).toEqual(['a', '"a,b"', '"q"""', '" x"', '"l\nm"', '3', '']);
  });

  it('a resumed run keeps the existing columns', () => {
    const dir = tempDir('csv2');
    const a = new CsvTracker(init(dir));
    a.start();
    a.log({ loss: 1 }, 0);
    const b = new CsvTracker(init(dir));
    b.start();
    b.log({ loss: 2, acc: 3 }, 1);
    const rows = parse(readFileSync(join(dir, 'proj', 'metrics.csv'), 'utf8'), { columns: true }) as Array<Record<string, string>>;
    expect(rows.map((r) => [r.step, r.loss, r.acc])).toEqual([['0', '1', ''], ['1', '2', '3']]);
  });
});
