// Shape checks without debug mode (issue 11 item 7): gloo accepts a broadcast into a larger
// tensor and an allGather of equal byte counts in different shapes, giving wrong data
// silently. The shape header travelling with the data turns both into errors naming the
// collective, each rank's shape and the fix; the group stays usable.
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runRanksOk } from './fixtures/spawn-ranks.js';

const worker = fileURLToPath(new URL('./fixtures/shape-check-worker.ts', import.meta.url));

describe('shape checks on broadcast and allGather (2 processes, no debug mode)', () => {
  it('mismatches fail with the shapes and the fix; matching calls still work afterwards', async () => {
    const [r0, r1] = await runRanksOk(worker, 2, { ACCELERATE_DEBUG_MODE: '' });
    // broadcast [3] into [6]: the root is done; the receiver fails instead of keeping [7,7,7,0,0,0].
    expect(r0!.broadcastLarger).toEqual({ ok: [7, 7, 7] });
    expect(r1!.broadcastLarger.error).toBe(
      "broadcast #1 [6] on rank 1 of group 'default': the root (rank 0) broadcast a tensor of shape [3] float32, but this rank passed shape [6] float32, which now holds partial data. " +
        "Every rank must pass a tensor of the root's shape and dtype to broadcast (e.g. zeros of shape [3] float32 on the receivers).",
    );
    for (const [rank, r] of [r0!, r1!].entries()) {
      expect(r.allGatherShapes.error).toBe(
        `allGather #2 [${rank === 0 ? '2, 3' : '3, 2'}] on rank ${rank} of group 'default': the ranks passed different shapes or dtypes (rank 0 shape [2, 3] int64, rank 1 shape [3, 2] int64). ` +
          'allGather needs the same shape and dtype on every rank: reshape, or pad to a common shape first.',
      );
      expect(r.allGatherDtypes.error).toContain('(rank 0 shape [2] float32, rank 1 shape [2] int32)');
      expect(r.after.ok).toEqual({ broadcast: [[1, 2], [3, 4]], gather: [[0, 10], [1, 11]], host: [[0], [1.5]] });
    }
  }, 60_000);
});
