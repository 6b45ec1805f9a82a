// DistributedDataParallel with real processes (2 ranks, gloo over loopback).
import { describe, it, expect } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runRanksOk } from './fixtures/spawn-ranks.js';

const worker = fileURLToPath(new URL('./fixtures/ddp-worker.ts', import.meta.url));

const maxAbsDiff = (a: number[], b: number[]) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

function gradsClose(a: Array<number[] | null>, b: Array<number[] | null>, tol: number): boolean {
  return a.every((g, i) => g !== null && b[i] !== null && maxAbsDiff(g, b[i]!) <= tol);
}

describe('DDP (2 processes)', () => {
  it('2 ranks with batch b end with the weights of 1 process with batch 2b after 20 steps (SGD and AdamW)', async () => {
    const [r0, r1] = await runRanksOk(worker, 2, { SCENARIO: 'equivalence' });
    for (const kind of ['sgd', 'adamw'] as const) {
      // rank 1 built different weights: the wrap replaced them with rank 0's
      expect(r0![kind].changedByWrap).toBe(false);
      expect(r1![kind].changedByWrap).toBe(true);
      for (const r of [r0!, r1!]) {
        expect(r[kind].maxDiffVsReference).toBeLessThan(1e-5);
        expect(r[kind].reductions).toBe(20);
      }
      expect(r0![kind].params).toEqual(r1![kind].params);
    }
    expect(maxAbsDiff(r0!.sgd.params, r0!.adamw.params)).toBeGreaterThan(1e-3);
    // Control: the same loop with gradient sync off drifts away on each rank.
    for (const r of [r0!, r1!]) {
      expect(r.control.maxDiffVsReference).toBeGreaterThan(1e-3);
      expect(r.control.reductions).toBe(0);
    }
    expect(maxAbsDiff(r0!.control.params, r1!.control.params)).toBeGreaterThan(1e-3);
  });

  it('[B34] GA = 2 via setGradientSync: grads differ between ranks and from the reference inside no-sync, equal the average on sync steps', async () => {
    const [r0, r1] = await runRanksOk(worker, 2, { SCENARIO: 'sync' });
    expect(r0!.ga.map((it: { sync: boolean }) => it.sync)).toEqual([false, true, false, true, true]);
    for (let i = 0; i < r0!.ga.length; i++) {
      const a = r0!.ga[i];
      const b = r1!.ga[i];
      expect(a.ref).toEqual(b.ref);
      if (a.sync) {
        expect(a.ddp).toEqual(b.ddp); // bitwise equal on every rank
        expect(gradsClose(a.ddp, a.ref, 1e-5)).toBe(true);
      } else {
        expect(gradsClose(a.ddp, b.ddp, 1e-3)).toBe(false);
        expect(gradsClose(a.ddp, a.ref, 1e-3)).toBe(false);
        // the reference (whole batch) is the mean of the two local gradients
        const mean = a.ddp.map((g: number[], k: number) => g.map((v, j) => (v + b.ddp[k][j]) / 2));
        expect(gradsClose(mean, a.ref, 1e-5)).toBe(true);
      }
    }
    // sync_each_batch: equal on every iteration
    for (let i = 0; i < r0!.each.length; i++) {
      expect(r0!.each[i].ddp).toEqual(r1!.each[i].ddp);
      expect(gradsClose(r0!.each[i].ddp, r0!.each[i].ref, 1e-5)).toBe(true);
    }
  });

  it('a model split over several buckets gives bit-identical weights to one bucket', async () => {
    const [r0, r1] = await runRanksOk(worker, 2, { SCENARIO: 'buckets' });
    for (const r of [r0!, r1!]) {
      expect(r.one.buckets).toBe(1);
      expect(r.many.buckets).toBeGreaterThanOrEqual(5);
      // launched in reverse registration order, each parameter in exactly one bucket
      expect(r.many.bucketNames.flat()).toEqual(r.one.bucketNames.flat());
      expect(r.one.bucketNames.flat()).toEqual(['4.bias', '4.weight', '2.bias', '2.weight', '0.bias', '0.weight']);
      expect(r.many.params).toEqual(r.one.params);
      expect(r.many.maxDiffVsReference).toBeLessThan(1e-5);
      // every bucket's all-reduce was started from a gradient hook, during backward
      expect(r.many.launchedDuringBackward).toBe(20 * r.many.buckets);
    }
    expect(r0!.many.params).toEqual(r1!.many.params);
  });

  it('findUnusedParameters: a branch used on rank 0 only gets the average, a branch nobody uses keeps no grad; without it backward names the parameters', async () => {
    const [r0, r1] = await runRanksOk(worker, 2, { SCENARIO: 'unused' });
    expect(r0!.found.aGrad).toEqual(r1!.found.aGrad);
    expect(r0!.found.bGrad).toEqual(r1!.found.bGrad);
    // rank 1 contributed zeros for b: average = rank 0's local gradient / 2
    expect(maxAbsDiff(r0!.found.bGrad, r0!.bLocalRank0.map((v: number) => v / 2))).toBeLessThan(1e-5);
    expect(r0!.found.cGrad).toBeNull();
    expect(r1!.found.cGrad).toBeNull();
    expect(r1!.strictError).toMatch(/DDP: parameters \[.*b\.weight.*\] received no gradient in this backward on rank 1/);
    expect(r1!.strictError).toContain('findUnusedParameters: true');
    expect(r0!.strictError).toMatch(/parameters \[c\.bias, c\.weight\] received no gradient/);
  });

  it('buffers: broadcast from rank 0 at wrap and before forwards that sync, not under noGrad, no-sync or broadcastBuffers false', async () => {
    const [r0, r1] = await runRanksOk(worker, 2, { SCENARIO: 'buffers' });
    expect([r0!.afterWrap, r1!.afterWrap]).toEqual([10, 10]);
    expect([r0!.afterNoGradForward, r1!.afterNoGradForward]).toEqual([20, 21]);
    expect([r0!.afterForward, r1!.afterForward]).toEqual([20, 20]);
    expect([r0!.afterNoSyncForward, r1!.afterNoSyncForward]).toEqual([30, 31]);
    expect([r0!.noBroadcastBuffers, r1!.noBroadcastBuffers]).toEqual([40, 41]);
  });

  it('gradientAsBucketView (the default) gives bit-identical gradients and weights to copying, with zeroGrad to null or zeros and no-sync accumulation', async () => {
    const [r0, r1] = await runRanksOk(worker, 2, { SCENARIO: 'bucket-view' });
    for (const r of [r0!, r1!]) {
      expect(r.view.option).toBe(true);
      expect(r.copy.option).toBe(false);
      expect(r.view.buckets).toBeGreaterThan(1);
      expect(r.view.reductions).toBe(9);
      expect(r.view.nullGrads).toBe(0);
      expect(r.view.grads).toEqual(r.copy.grads);
      expect(r.view.params).toEqual(r.copy.params);
    }
    // averaged: the same on both ranks
    expect(r0!.view.grads).toEqual(r1!.view.grads);
    expect(r0!.view.params).toEqual(r1!.view.params);
  });
});
