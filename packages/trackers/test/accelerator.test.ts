import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { Accelerator, AcceleratorState, readEventLog } from '@accelerate/core';
import { ReferenceBackend } from '@accelerate/core/testing';

describe('Accelerator({ logWith })', () => {
  it('logs through the CSV tracker and the JSONL event stream, main process only', async () => {
    await AcceleratorState.resetState();
    const projectDir = mkdtempSync(join(tmpdir(), 'acc-track-'));
    const acc = new Accelerator({ backend: new ReferenceBackend(), configFile: false, env: {}, projectDir, logWith: ['csv'] });
    await acc.initTrackers('run1', { lr: 0.1 });
    await acc.log({ loss: 0.5 }, 1);
    await acc.log({ loss: 0.25, acc: 0.9 }, 2);
    const csvTracker = acc.getTracker('csv') as unknown as { path: string };
    const eventLog = acc.trackerHub.eventLogPath;
    await acc.endTraining();
    const rows = parse(readFileSync(csvTracker.path, 'utf8'), { columns: true }) as Array<Record<string, string>>;
    expect(rows.map((r) => [r.step, r.loss])).toEqual([['1', '0.5'], ['2', '0.25']]);
    expect(eventLog).toBeDefined();
    const { events, errors } = readEventLog(eventLog!);
    expect(errors).toEqual([]);
    expect(events.filter((e) => e.type === 'metrics').map((e) => (e as { values: Record<string, number> }).values)).toEqual([{ loss: 0.5 }, { loss: 0.25, acc: 0.9 }]);
    expect(readdirSync(projectDir).length).toBeGreaterThan(0);
  });

  it('rejects an unknown tracker name with the valid names', () => {
    expect(() => new Accelerator({ backend: new ReferenceBackend(), configFile: false, env: {}, logWith: ['tensorbord'] })).toThrow(/tensorbord/);
  });
});
