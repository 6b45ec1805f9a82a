// joinDistributed (torch's Join with DDP's join hook) on 3 real processes where rank r
// runs r + 1 steps: rank 0 runs out first, rank 2 last.
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runRanksOk } from './fixtures/spawn-ranks.js';

const worker = fileURLToPath(new URL('./fixtures/join-worker.ts', import.meta.url));
const maxDiff = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));

describe('joinDistributed, 3 ranks running 1, 2 and 3 steps', () => {
  for (const divide of ['initial', 'active'] as const) {
    it(`ends with the reference weights on every rank (gradients divided by the ${divide === 'initial' ? 'initial world size' : 'active ranks'}); buffers come from the lowest active rank, the final model from the last`, async () => {
      const ranks = await runRanksOk(worker, 3, { MASTER_ADDR: '127.0.0.1', DIVIDE: divide }, 40_000);
      for (const r of ranks) {
        expect(r.result).toBe('done');
        expect(maxDiff(r.params, r.refParams)).toBeLessThanOrEqual(1e-5);
        expect(r.params).toEqual(ranks[2]!.params);
        expect(r.runningMean).toEqual(ranks[2]!.runningMean);
        // Broadcast from the lowest active rank before each synchronised forward, then one
        // forward per step: 3 after 3 steps (a broadcast from the joined rank 0 would give 1).
        expect(r.numBatchesTracked).toBe(3);
        // rank r shadowed the 2 - r backward passes it did not run
        expect(r.info.joinShadowedBackwards).toBe(2 - r.rank);
        expect(r.info.reductions).toBe(r.rank + 1);
      }
    }, 45_000);
  }
});
