// allGatherInto / reduceScatterInto / waitSync in real processes (2 and 4 ranks): values
// exact against a reference computed in each rank (float32, float64, bfloat16, float16;
// sum, avg, max, min; uneven and zero sizes; wait() and waitSync()), misuse errors, and
// waitSync's failures: a peer that never joins (timeout diagnosis), a peer killed inside
// the collective (an error within moments, not a hang).
import { describe, it, expect } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runRanks, runRanksOk } from './fixtures/spawn-ranks.js';
import { native } from '../src/native.js';

const worker = fileURLToPath(new URL('./fixtures/flat-collectives-worker.ts', import.meta.url));
const torch2 = Number(native.torchVersion.split('.')[0]) >= 2;

describe('flat-tensor collectives across processes', () => {
  it('2 ranks: every dtype, size and op matches the reference, through wait() and waitSync()', async () => {
    const results = await runRanksOk(worker, 2, { SCENARIO: 'values', REPS: '50' }, 110_000);
    for (const r of results) {
      expect(r.failures).toEqual([]);
      expect(r.checks).toBe(4 * 5 * 2 * 5 + 2);
      expect(r.implementations.allGatherInto).toBe(torch2 ? 'native' : 'allgather-into-views');
      expect(r.implementations.reduceScatterInto).toBe(torch2 ? 'native' : 'alltoall+sum');
      expect(r.errors[0]).toMatch(/allGatherInto: output has 5 elements .* needs 2 × 2 = 4 elements/);
      expect(r.errors[1]).toMatch(/output is float32 but input is float64/);
      expect(r.errors[2]).toMatch(/avg needs a floating-point dtype, got int32/);
      expect(r.waitSyncCompletedUs).toBeLessThan(50);
    }
    // Both ranks took the same sequence numbers (misuse errors took none).
    expect(results[0]!.sequence).toBe(results[1]!.sequence);
  }, 120_000);

  it('4 ranks: values match the reference', async () => {
    const results = await runRanksOk(worker, 4, { SCENARIO: 'values', SIZES: '1,5,0,4099', REPS: '10' }, 110_000);
    for (const r of results) {
      expect(r.failures).toEqual([]);
      expect(r.checks).toBe(4 * 4 * 2 * 5 + 2);
    }
  }, 120_000);

  it('waitSync on a collective a peer never issues fails after the timeout with the hang diagnosis', async () => {
    const [r0, r1] = await runRanksOk(worker, 2, { SCENARIO: 'timeout', TIMEOUT_MS: '2000' }, 60_000);
    expect(r1!.slept).toBe(true);
    expect(r0!.elapsedMs).toBeGreaterThanOrEqual(1900);
    expect(r0!.elapsedMs).toBeLessThan(15_000);
    expect(r0!.error).toMatch(/^reduceScatterInto #2 \[4\] float32 .* on rank 0 of group 'default' did not complete within 2000 ms/);
    expect(r0!.error).toMatch(/Rank 1 is late: still at collective #1 \(allReduce #1 \[4\], completed\)/);
  }, 70_000);

  for (const [world, op, async] of [
    [2, 'allGatherInto', false],
    [2, 'reduceScatterInto', false],
    [4, 'allGatherInto', false],
    [4, 'reduceScatterInto', true],
  ] as const) {
    it(`${world} ranks: the last rank killed inside ${op} → ${async ? 'wait()' : 'waitSync()'} throws on the others within moments`, async () => {
      const results = await runRanks(worker, world, { SCENARIO: 'kill', OP: op, TIMEOUT_MS: '30000', ASYNC: async ? '1' : '0' }, 60_000);
      expect(results[world - 1]!.code).not.toBe(0);
      for (const r of results.slice(0, world - 1)) {
        expect(r.code, r.stderr.slice(-2000)).toBe(0);
        expect(r.json!.error).toMatch(new RegExp(`^${op} #2 .* failed \\(`));
        expect(r.json!.elapsedMs).toBeLessThan(15_000);
      }
    }, 70_000);
  }
});
