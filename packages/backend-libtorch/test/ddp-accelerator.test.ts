// DDP driven by core's Accelerator (prepare → accumulate → backward), 2 real processes.
import { describe, it, expect } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runRanksOk } from './fixtures/spawn-ranks.js';

const worker = fileURLToPath(new URL('./fixtures/accel-worker.ts', import.meta.url));

type Entry = { iteration: number; sync: boolean; ddp: number[][]; ref: number[][] };
const close = (a: number[][], b: number[][], tol: number) => a.every((g, i) => g.every((v, j) => Math.abs(v - b[i]![j]!) <= tol));

async function run(syncEachBatch: boolean) {
  const env = { MASTER_ADDR: '127.0.0.1', SYNC_EACH_BATCH: syncEachBatch ? '1' : '0' };
  return runRanksOk(worker, 2, env);
}

describe('Accelerator + libtorch DDP (2 processes)', () => {
  it('[B34] 80 samples, bs 16, GA = 2: grads equal the gathered-batch reference (loss / GA) on sync iterations only', async () => {
    const [r0, r1] = await run(false);
    for (const r of [r0!, r1!]) {
      expect(r.numProcesses).toBe(2);
      expect(r.unwrappedIsOriginal).toBe(true);
      // 40 samples per rank in batches of 16, 16, 8 (+ even-batches padding): sync F, T, T (last batch)
      expect(r.log.map((e: Entry) => e.sync)).toEqual([false, true, true]);
      for (const e of r.log as Entry[]) expect(close(e.ddp, e.ref, 1e-5)).toBe(e.sync);
    }
    // inside no_sync each rank keeps its own gradient; after sync they are identical
    expect(close(r0!.log[0].ddp, r1!.log[0].ddp, 1e-3)).toBe(false);
    expect(r0!.log[1].ddp).toEqual(r1!.log[1].ddp);
    expect(r0!.log[2].ddp).toEqual(r1!.log[2].ddp);
  });

  it('[B34] with syncEachBatch the grads match the reference on every iteration', async () => {
    const [r0, r1] = await run(true);
    for (const r of [r0!, r1!]) {
      for (const e of r.log as Entry[]) expect(close(e.ddp, e.ref, 1e-5)).toBe(true);
    }
    expect(r0!.log.map((e: Entry) => e.ddp)).toEqual(r1!.log.map((e: Entry) => e.ddp));
  });
});
