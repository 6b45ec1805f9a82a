import { describe, it, expect } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TrackerHub, TrackerRegistry } from '@accelerate/core/internal';
import { repoRoot, tempDir } from '../helpers.js';

// The hub finds built-in trackers by importing '@accelerate/trackers' (the built package), as a user's Accelerator does.
const built = existsSync(join(repoRoot, 'packages/trackers/dist/index.js'));
if (!built) console.log('[skip] default tracker loading: packages/trackers is not built (npm run build)');

describe('TrackerHub loads the built-in trackers by name', () => {
  it.skipIf(!built)("logWith: ['csv'] works with no loader given, and the JSONL stream is added beside it", async () => {
    const dir = tempDir('loader');
    const warnings: string[] = [];
    const hub = new TrackerHub({ logWith: ['csv'], loggingDir: dir, registry: new TrackerRegistry(), warn: (m) => warnings.push(m) });
    await hub.initTrackers('p');
    expect(warnings).toEqual([]);
    expect(hub.trackers.map((t) => t.name)).toEqual(['jsonl', 'csv']);
    await hub.log({ loss: 1 }, 0);
    await hub.endTraining();
    expect(readFileSync(join(dir, 'p', 'metrics.csv'), 'utf8').split('\n')[0]).toBe('step,time,rank,loss');
    expect(existsSync(join(dir, 'p', 'events.jsonl'))).toBe(true);
  });
});
