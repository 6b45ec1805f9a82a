// `accelerate test`'s DDP synchronisation checks (spec §12 test_sync) on 2 launched
// processes: they pass with working DDP and fail, saying why, when noSync is broken.
import { describe, expect, it } from 'vitest';
import { cleanEnv, fixture, rankResults, runAccelerate } from './helpers.js';

const launch = async (breakNoSync: boolean) => {
  const run = await runAccelerate(['launch', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no', fixture('ddp-checks-broken.ts')], {
    env: cleanEnv({ BREAK_NO_SYNC: breakNoSync ? '1' : '0' }),
    timeoutMs: 40_000,
  });
  expect(run.code, run.stderr).toBe(0);
  return rankResults(run.stdout);
};

describe('accelerate test: DDP sync checks', () => {
  it('pass on 2 ranks: gradients differ inside noSync and on non-sync accumulate steps, equal their average after sync', async () => {
    for (const r of await launch(false)) {
      expect(r.results).toEqual([
        { name: 'DDP noSync', ok: true, detail: 'gradients differ on 2 ranks inside noSync, equal their average after sync' },
        { name: 'DDP accumulate (GA = 2)', ok: true, detail: 'gradients differ on non-sync steps, equal their average on sync steps' },
      ]);
    }
  }, 45_000);

  it('fail with the reason when a backend keeps synchronising inside noSync', async () => {
    for (const r of await launch(true)) {
      const [noSync, accumulate] = r.results;
      expect(noSync.ok).toBe(false);
      expect(noSync.detail).toMatch(new RegExp(`^inside noSync rank ${r.rank} holds \\[.*\\], not its own gradient \\[.*\\]$`));
      expect(accumulate.ok).toBe(false);
      expect(accumulate.detail).toMatch(/^accumulate step 1 \(no sync\): ranks 0 and 1 hold the same gradients \[.*\]; they must differ, since gradient synchronisation should be off$/);
    }
  }, 45_000);
});
