import { describe, it, expect } from 'vitest';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { KNOWN_TRACKERS, TrackerHub, TrackerRegistry } from '@accelerate/core/internal';
import { builtinTrackers } from '../../src/index.js';
import { replay } from '../../src/replay.js';
import { runPython, tempDir, tensorboardPython } from '../helpers.js';

async function recordRun(dir: string): Promise<string> {
  const hub = new TrackerHub({ logWith: ['jsonl'], loggingDir: dir, registry: new TrackerRegistry(), loadBuiltins: async () => builtinTrackers, warn: () => {} });
  await hub.initTrackers('rec', { lr: 0.5 });
  for (let s = 0; s < 4; s++) await hub.log({ loss: 4 - s, acc: s / 4 }, s);
  await hub.endTraining();
  const path = join(dir, 'rec', 'events.jsonl');
  appendFileSync(path, '{"type":"metrics","time":'); // a torn last line, as after a crash
  return path;
}

describe('replay', () => {
  it('sends a recorded stream to CSV with the original steps and times, skipping a torn line', async () => {
    const dir = tempDir('replay');
    const path = await recordRun(dir);
    const result = await replay(path, { to: 'csv' });
    expect(result.events).toBe(7);
    expect(result.skippedLines).toEqual([{ line: 8, message: expect.stringMatching(/not a JSON line/) }]);
    expect(result.trackers).toEqual({ csv: { delivered: 7 } });
    expect(result.loggingDir).toBe(join(dir, 'rec', 'replay'));
    const rows = parse(readFileSync(join(dir, 'rec', 'replay', 'rec', 'metrics.csv'), 'utf8'), { columns: true }) as Array<Record<string, string>>;
    expect(rows.map((r) => [r.step, r.loss, r.acc])).toEqual([['0', '4', '0'], ['1', '3', '0.25'], ['2', '2', '0.5'], ['3', '1', '0.75']]);
    const times = readFileSync(path, 'utf8').split('\n').slice(2, 6).map((l) => JSON.parse(l).time);
    expect(rows.map((r) => Number(r.time))).toEqual(times);
  });

  it('never writes into the run it reads: the default is a new folder each time, a logging dir pointing back is refused', async () => {
    const dir = tempDir('replay-self');
    // A run that logged to JSONL and CSV: replaying into its own folder would append every row again.
    const hub = new TrackerHub({ logWith: ['jsonl', 'csv'], loggingDir: dir, registry: new TrackerRegistry(), loadBuiltins: async () => builtinTrackers, warn: () => {} });
    await hub.initTrackers('rec', { lr: 0.5 });
    for (let s = 0; s < 3; s++) await hub.log({ loss: 3 - s }, s);
    await hub.endTraining();
    const path = join(dir, 'rec', 'events.jsonl');
    const own = readFileSync(join(dir, 'rec', 'metrics.csv'), 'utf8');
    const csvRows = (p: string) => (parse(readFileSync(p, 'utf8'), { columns: true }) as Array<Record<string, string>>).map((r) => r.step);

    const first = await replay(path, { to: 'csv' });
    const second = await replay(path, { to: 'csv' });
    expect([first.loggingDir, second.loggingDir]).toEqual([join(dir, 'rec', 'replay'), join(dir, 'rec', 'replay-2')]);
    expect(readFileSync(join(dir, 'rec', 'metrics.csv'), 'utf8')).toBe(own);
    expect(csvRows(join(first.loggingDir, 'rec', 'metrics.csv'))).toEqual(['0', '1', '2']);
    expect(csvRows(join(second.loggingDir, 'rec', 'metrics.csv'))).toEqual(['0', '1', '2']);

    // The old default (two levels above the file) is the run itself: refused before anything is written.
    await expect(replay(path, { to: 'csv', loggingDir: dir })).rejects.toThrow(/would write into .*rec, the run being read, and every point would appear twice; leave --logging_dir out/);
    expect(readFileSync(join(dir, 'rec', 'metrics.csv'), 'utf8')).toBe(own);
    // The same folder under another project name is fine.
    expect((await replay(path, { to: 'csv', loggingDir: dir, project: 'again' })).trackers.csv).toEqual({ delivered: 6 });
  });

  it('rejects unknown targets with the valid names, and reports a failing target without stopping the others', async () => {
    const dir = tempDir('replay2');
    const path = await recordRun(dir);
    await expect(replay(path, { to: 'tensorbored' })).rejects.toThrow(/unknown tracker "tensorbored" in --to; valid names: csv, tensorboard, mlflow, wandb, comet_ml/);
    const saved = process.env.MLFLOW_TRACKING_URI;
    delete process.env.MLFLOW_TRACKING_URI;
    try {
      const r = await replay(path, { to: ['mlflow', 'csv'], warn: () => {} });
      expect(r.trackers.mlflow.error).toMatch(/set MLFLOW_TRACKING_URI/);
      expect(r.trackers.csv).toEqual({ delivered: 7 });
    } finally {
      if (saved !== undefined) process.env.MLFLOW_TRACKING_URI = saved;
    }
  });

  const { python, reason } = tensorboardPython();
  it.skipIf(!python)(`replays into TensorBoard, read back by TensorBoard's reader${reason ? ` (skipped: ${reason})` : ''}`, async () => {
    const dir = tempDir('replay3');
    const path = await recordRun(dir);
    const out = await replay(path, { to: ['tensorboard'], loggingDir: join(dir, 'tb') });
    expect(out.trackers.tensorboard).toEqual({ delivered: 7 });
    const script = `
import sys, json
from tensorboard.backend.event_processing import event_accumulator as ea
a = ea.EventAccumulator(sys.argv[1]); a.Reload()
print(json.dumps({t: [[e.step, e.value, e.wall_time] for e in a.Scalars(t)] for t in a.Tags()["scalars"]}))`;
    const s = runPython(python!, script, [join(dir, 'tb', 'rec')]) as Record<string, Array<[number, number, number]>>;
    expect(s.loss.map(([st, v]) => [st, v])).toEqual([[0, 4], [1, 3], [2, 2], [3, 1]]);
    const times = readFileSync(path, 'utf8').split('\n').slice(2, 6).map((l) => JSON.parse(l).time);
    expect(s.loss.map(([, , t]) => t)).toEqual(times);
  });
});

describe('built-in tracker classes', () => {
  it("match core's table of known trackers (name, logging dir, main process only)", () => {
    for (const [name, info] of Object.entries(KNOWN_TRACKERS)) {
      const cls = builtinTrackers[name];
      expect(cls, name).toBeDefined();
      expect([cls.trackerName, cls.requiresLoggingDirectory], name).toEqual([name, info.requiresLoggingDirectory]);
      if (name !== 'jsonl') expect(cls.mainProcessOnly !== false, name).toBe(info.mainProcessOnly);
    }
    expect(Object.keys(builtinTrackers).sort()).toEqual(Object.keys(KNOWN_TRACKERS).sort());
  });
});
