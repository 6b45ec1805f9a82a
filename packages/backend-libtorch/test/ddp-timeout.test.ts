// Hang diagnosis: a rank that skips a collective is named in the other ranks' errors.
import { describe, it, expect } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runRanks, runRanksOk } from './fixtures/spawn-ranks.js';

const worker = fileURLToPath(new URL('./fixtures/ddp-worker.ts', import.meta.url));

describe('collective timeouts name where every rank is', () => {
  it('rank 1 skips allReduce #3 (3 ranks, 3 s timeout): ranks 0 and 2 fail after ~3 s naming rank 1 at #2', async () => {
    const results = await runRanksOk(worker, 3, { SCENARIO: 'timeout', TIMEOUT_MS: '3000' });
    expect(results[1]!.skipped).toBe(true);
    for (const r of [0, 2]) {
      const { error, elapsedMs } = results[r]!;
      expect(error).toContain(`allReduce #3 [4] on rank ${r} of group 'default' did not complete within 3000 ms`);
      expect(error).toContain('rank 1 is at allReduce #2 [1] (completed); ranks 0,2 at allReduce #3 [4] (waiting)');
      expect(error).toMatch(/Rank 1 is late: still at collective #2 \(allReduce #2 \[1\], completed\), last seen \d+\.\d s ago, while ranks 0,2 are at #3\./);
      expect(error).toContain('if it is only slow, raise the timeout');
      expect(error).not.toContain('different collectives');
      expect(elapsedMs).toBeGreaterThanOrEqual(2900);
      expect(elapsedMs).toBeLessThan(10_000);
    }
  });

  it('a rank that dies makes the next collective fail fast (well before the timeout), naming its last position', async () => {
    const results = await runRanks(worker, 2, { SCENARIO: 'crash', TIMEOUT_MS: '20000' });
    expect(results[1]!.code).toBe(3);
    const r0 = results[0]!;
    expect(r0.code).toBe(0);
    expect(r0.json!.error).toContain("allReduce #3 [4] on rank 0 of group 'default' failed (");
    expect(r0.json!.error).toContain('rank 1 is at allReduce #2 [1] (completed); rank 0 at allReduce #3 [4] (waiting)');
    expect(r0.json!.error).toMatch(/Rank 1 is late: still at collective #2 \(allReduce #2 \[1\], completed\), last seen \d+\.\d s ago, while rank 0 is at #3\. A connection failed meanwhile: it most likely exited or crashed/);
    expect(r0.json!.elapsedMs).toBeLessThan(10_000);
  });

  it('ranks at the same collective in different states are reported as at the same collective, not as different collectives', async () => {
    const results = await runRanks(worker, 2, { SCENARIO: 'stalled', TIMEOUT_MS: '2000' }, 12_000);
    const r0 = results[0]!;
    expect(r0.code).toBe(0);
    const error = r0.json!.error as string;
    expect(error).toContain("allReduce #3 [4] on rank 0 of group 'default' did not complete within 2000 ms");
    expect(error).toContain('ranks 0,1 are at allReduce #3 [4] (rank 0 waiting, rank 1 issued)');
    expect(error).toContain('Every rank issued this same collective');
    expect(error).not.toContain('different collectives');
  }, 20_000);

  it('a DDP backward whose peer never runs backward fails with the bucket and the peer position', async () => {
    const [r0, r1] = await runRanksOk(worker, 2, { SCENARIO: 'ddp-timeout', TIMEOUT_MS: '3000' });
    expect(r1!.skipped).toBe(true);
    expect(r0!.error).toContain('allReduce #3 [1507] (DDP gradient bucket 0 of 1) on rank 0');
    expect(r0!.error).toContain("rank 1 is at broadcast #2 [1507] (DDP: rank 0's parameters and buffers) (completed)");
    expect(r0!.error).toContain('Rank 1 is late: still at collective #2 (broadcast #2 [1507]');
  });
});
