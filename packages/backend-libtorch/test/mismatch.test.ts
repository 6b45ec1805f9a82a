// Collectives whose sizes differ between ranks: gloo detects the mismatch on its transport
// thread, which used to abort the process (gloo::EnforceNotMet). Now every rank gets a JS
// error naming the op, its sequence number and each rank's shape, and exits normally.
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runRanks } from './fixtures/spawn-ranks.js';

const worker = fileURLToPath(new URL('./fixtures/mismatch-worker.ts', import.meta.url));

for (const op of ['allReduce', 'allGather'] as const) {
  describe(`${op} with [4] on rank 0 and [5] on rank 1 (2 processes)`, () => {
    it('every rank gets a clear error (at the mismatched call or the next) instead of an abort, and the group refuses further calls', async () => {
      const results = await runRanks(worker, 2, { OP: op, MASTER_ADDR: '127.0.0.1' }, 40_000);
      for (const [rank, r] of results.entries()) {
        expect(r.code, `rank ${rank} exited ${r.code}: ${r.stderr.slice(-2000)}`).toBe(0);
        expect(r.stderr).not.toMatch(/terminate called|Aborted/);
        const out = r.json!;
        expect(out.first).toEqual([3]);
        // The mismatched call throws, or (on a rank whose peer sent fewer bytes than it
        // expected, which gloo does not notice) the next call does, with the reason.
        const errors = [out.mismatch, out.after].filter((m) => m !== 'no error') as string[];
        expect(errors.length).toBeGreaterThan(0);
        expect(errors.join('\n')).toMatch(/different sizes/);
        // nobody can use the group afterwards
        expect(out.after).not.toBe('no error');
      }
      // The rank that received the oversized message names the op, its number and shape, the
      // bytes, and where the ranks are; it knows within a couple of wait slices, not after
      // the 30 s timeout.
      const detecting = results.map((r) => r.json!).filter((o) => /a peer sent \d+ bytes where this rank's buffer holds \d+/.test(o.mismatch));
      expect(detecting.length).toBeGreaterThan(0);
      for (const o of detecting) {
        const shape = o.rank === 0 ? 4 : 5;
        expect(o.mismatch).toMatch(new RegExp(`^${op} #2 \\[${shape}\\] on rank ${o.rank} of group 'default' failed`));
        expect(o.mismatch).toContain(`${op} #2 [${shape}] (waiting)`);
        expect(o.mismatchMs).toBeLessThan(10_000);
        expect(o.after).toMatch(/^allReduce \[1\] on rank \d: the process group is unusable since an earlier collective failed/);
      }
    });
  });
}
