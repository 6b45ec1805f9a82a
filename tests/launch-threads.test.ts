// CPU threads of launched ranks: `accelerate launch` divides the cores among the local
// ranks (OMP_NUM_THREADS) and the libtorch addon applies it to its intra- and inter-op
// pools when it loads; gloo's worker threads per group stay bounded.
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { cleanEnv, fixture, rankResults, runAccelerate } from './helpers.js';

async function launch(extra: string[]) {
  const env = cleanEnv();
  delete env.OMP_NUM_THREADS; // the launcher would pass its own value on
  const run = await runAccelerate(['launch', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no', ...extra, fixture('thread-checks.ts')], {
    env,
    timeoutMs: 40_000,
  });
  expect(run.code, run.stderr).toBe(0);
  const ranks = rankResults(run.stdout);
  expect(ranks.map((r) => r.rank)).toEqual([0, 1]);
  return ranks;
}

describe('threads of launched ranks (2 processes)', () => {
  it('by default each rank gets the cores divided by the local ranks, applied to libtorch intra- and inter-op threads; gloo keeps 2 worker threads', async () => {
    const expected = Math.max(1, Math.floor(availableParallelism() / 2));
    for (const r of await launch([])) {
      expect(r).toMatchObject({ env: String(expected), ompNumThreads: expected, intraOp: expected, interOp: expected, glooThreads: 2, groupThreads: 2 });
    }
  }, 45_000);

  it('--num_cpu_threads_per_process 3 gives every rank 3 intra- and inter-op threads', async () => {
    for (const r of await launch(['--num_cpu_threads_per_process', '3'])) {
      expect(r).toMatchObject({ env: '3', ompNumThreads: 3, intraOp: 3, interOp: 3, groupThreads: 2 });
    }
  }, 45_000);
});
