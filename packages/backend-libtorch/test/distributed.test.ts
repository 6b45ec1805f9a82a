// Three real processes joined through a TCPStore and ProcessGroupGloo.
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from './fixtures/spawn-ranks.js';

const worker = fileURLToPath(new URL('./fixtures/dist-worker.ts', import.meta.url));


function runRank(rank: number, world: number, port: number): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', worker], {
      env: { ...process.env, RANK: String(rank), WORLD_SIZE: String(world), MASTER_PORT: String(port), OMP_NUM_THREADS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 45_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`rank ${rank} exited ${code}: ${stderr}`));
      resolve(JSON.parse(stdout.trim().split('\n').pop()!));
    });
  });
}

describe('GlooProcessGroup (3 processes)', () => {
  it('allReduce, broadcast, allGather, reduceScatter, send/recv, barrier, store and newGroup', async () => {
    const world = 3;
    const port = await freePort();
    const results = await Promise.all([0, 1, 2].map((r) => runRank(r, world, port)));
    for (const [rank, out] of results.entries()) {
      expect(out.rank).toBe(rank);
      expect(out.size).toBe(world);
      expect(out.backend).toBe('gloo');
      // sums over ranks r = 0..2 of (r + 1) and 10 (r + 1)
      expect(out.allReduceSum).toEqual([6, 60]);
      expect(out.allReduceMax).toEqual([2, 0]);
      expect(out.allReduceAvgHost).toEqual([(0 + 2 + 4) / 3]);
      expect(out.broadcast).toEqual([1, 1, 1]);
      expect(out.allGather).toEqual([[0], [1], [2]]);
      expect(out.allGatherHost).toEqual([[0], [7], [14]]);
      // rank r gets the sum over senders s of inputs[r] = [r, s]
      expect(out.reduceScatter).toEqual([3 * rank, 0 + 1 + 2]);
      expect(out.ring).toBe(100 + ((rank + world - 1) % world));
      expect(out.storeGet).toBe(`v${(rank + 1) % world}`);
      expect(out.sub).toEqual(rank === 1 ? null : { rank: rank === 0 ? 0 : 1, size: 2, sum: 0 + 2 });
    }
    expect(results.map((r) => r.storeAdd).sort()).toEqual([1, 2, 3]);
  });
});
