import { describe, expect, it } from 'vitest';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { hostTensorFromNumbers, hostTensorToNumbers } from '../../src/ops/tensor-ops.js';
import { createInMemoryGroups } from '../../src/testing/in-memory-group.js';

describe('createInMemoryGroups', () => {
  it('allReduce sums in place on every rank, and a Work completes only when every rank issued it', async () => {
    const [g0, g1, g2] = createInMemoryGroups(3);
    const bufs = [new Float32Array([1, 2]), new Float32Array([10, 20]), new Float32Array([100, 200])];
    const w0 = g0.allReduce(bufs[0]);
    const w1 = g1.allReduce(bufs[1]);
    await Promise.resolve();
    expect(w0.isCompleted()).toBe(false);
    expect(Array.from(bufs[0])).toEqual([1, 2]);
    const w2 = g2.allReduce(bufs[2]);
    await Promise.all([w0.wait(), w1.wait(), w2.wait()]);
    expect(w0.isCompleted()).toBe(true);
    for (const b of bufs) expect(Array.from(b)).toEqual([111, 222]);
  });

  it('reduces with max/min/product/avg, int64 in bigint and float16 decoded', async () => {
    const [g0, g1] = createInMemoryGroups(2);
    const a = [new BigInt64Array([2n ** 62n, 3n]), new BigInt64Array([1n, 4n])];
    await Promise.all([g0.allReduce(a[0], 'max').wait(), g1.allReduce(a[1], 'max').wait()]);
    expect(Array.from(a[1])).toEqual([2n ** 62n, 4n]);
    const m = [new Int32Array([5, -1]), new Int32Array([3, 7])];
    await Promise.all([g0.allReduce(m[0], 'min').wait(), g1.allReduce(m[1], 'min').wait()]);
    expect(Array.from(m[0])).toEqual([3, -1]);
    const p = [new Float64Array([2, 3]), new Float64Array([4, 0.5])];
    await Promise.all([g0.allReduce(p[0], 'product').wait(), g1.allReduce(p[1], 'product').wait()]);
    expect(Array.from(p[0])).toEqual([8, 1.5]);
    const h = [hostTensorFromNumbers([1.5, 3], [2], 'float16'), hostTensorFromNumbers([2.5, 5], [2], 'float16')];
    await Promise.all([g0.allReduce(h[0], 'avg').wait(), g1.allReduce(h[1], 'avg').wait()]);
    expect(hostTensorToNumbers(h[0])).toEqual([2, 4]);
  });

  it('allGather returns every rank data in rank order, as copies', async () => {
    const [g0, g1] = createInMemoryGroups(2);
    const t0 = HostTensor.fromNumbers([1, 2], [1, 2]);
    const t1 = HostTensor.fromNumbers([3, 4], [1, 2]);
    const [r0, r1] = await Promise.all([g0.allGather(t0).wait(), g1.allGather(t1).wait()]);
    expect(r0.map((t) => (t as HostTensor).toArray())).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect((r1[0] as HostTensor).shape).toEqual([1, 2]);
    expect(r1[0]).not.toBe(t0);
    expect((r1[0] as HostTensor).data).not.toBe((r0[0] as HostTensor).data);
    expect((r1[0] as HostTensor).data).not.toBe(t0.data);
  });

  it('broadcast copies the source into every rank', async () => {
    const groups = createInMemoryGroups(3);
    const bufs = [new Int32Array([0, 0]), new Int32Array([7, 8]), new Int32Array([0, 0])];
    await Promise.all(groups.map((g, r) => g.broadcast(bufs[r], 1).wait()));
    for (const b of bufs) expect(Array.from(b)).toEqual([7, 8]);
  });

  it('reduceScatter gives rank r the reduction of every input r', async () => {
    const [g0, g1] = createInMemoryGroups(2);
    const out = [new Float32Array(2), new Float32Array(2)];
    const inputs = [
      [new Float32Array([1, 2]), new Float32Array([3, 4])],
      [new Float32Array([10, 20]), new Float32Array([30, 40])],
    ];
    await Promise.all([g0.reduceScatter(out[0], inputs[0]).wait(), g1.reduceScatter(out[1], inputs[1]).wait()]);
    expect(Array.from(out[0])).toEqual([11, 22]);
    expect(Array.from(out[1])).toEqual([33, 44]);
  });

  it('barrier resolves once every rank arrived', async () => {
    const [g0, g1] = createInMemoryGroups(2);
    const order: string[] = [];
    const a = g0.barrier().wait().then(() => order.push('rank0 passed'));
    await new Promise((r) => setTimeout(r, 10));
    order.push('rank1 arrives');
    await Promise.all([a, g1.barrier().wait()]);
    expect(order).toEqual(['rank1 arrives', 'rank0 passed']);
  });

  it('send/recv deliver by (src, dst, tag), in either order', async () => {
    const [g0, g1] = createInMemoryGroups(2);
    const into = new Float32Array(2);
    const recv = g1.recv(into, 0, 5);
    const send = g0.send(new Float32Array([4, 2]), 1, 5);
    await Promise.all([recv.wait(), send.wait()]);
    expect(Array.from(into)).toEqual([4, 2]);
    const early = g1.send(new Int32Array([9]), 0);
    const late = new Int32Array(1);
    await Promise.all([early.wait(), g0.recv(late, 1).wait()]);
    expect(late[0]).toBe(9);
  });

  it('detects a different collective issued by another rank, names both, and stays failed', async () => {
    const [g0, g1] = createInMemoryGroups(2);
    const w0 = g0.allReduce(new Float32Array([1]));
    const w1 = g1.broadcast(new Float32Array([1]), 0);
    const message = /collective #0 does not match across ranks: rank 0 called allReduce\(float32\(1\), sum\), rank 1 called broadcast\(float32\(1\), src 0\)/;
    await expect(w0.wait()).rejects.toThrow(message);
    await expect(w1.wait()).rejects.toThrow(message);
    await expect(g0.barrier().wait()).rejects.toThrow(/unusable after an earlier failure/);
  });

  it('detects different sizes for the same collective', async () => {
    const [g0, g1] = createInMemoryGroups(2);
    const works = [g0.allGather(new Float32Array(2)), g1.allGather(new Float32Array(3))];
    for (const w of works) {
      await expect(w.wait()).rejects.toThrow(
        /allGather #0: the ranks passed data of different dtypes or sizes \(rank 0 called allGather\(float32\(2\)\), rank 1 called allGather\(float32\(3\)\)\)/,
      );
    }
  });

  it('times out naming the ranks that never issued the collective', async () => {
    const [g0] = createInMemoryGroups(3, { timeoutMs: 30 });
    await expect(g0.barrier().wait()).rejects.toThrow(/barrier #0 timed out after 30 ms: rank\(s\) 1, 2 never issued it \(rank\(s\) 0 did\)/);
  });

  it('newGroup gives members a renumbered subgroup with its own sequence, and null to others', async () => {
    const groups = createInMemoryGroups(3);
    const subs = await Promise.all(groups.map((g) => g.newGroup([2, 0])));
    expect(subs[1]).toBeNull();
    expect(subs[0]!.rank).toBe(0);
    expect(subs[2]!.rank).toBe(1);
    expect(subs[2]!.size).toBe(2);
    const bufs = [new Float32Array([1]), new Float32Array([5])];
    await Promise.all([subs[0]!.allReduce(bufs[0]).wait(), subs[2]!.allReduce(bufs[1]).wait()]);
    expect(bufs.map((b) => b[0])).toEqual([6, 6]);
  });

  it('rejects payloads that are not HostTensors or typed arrays', () => {
    const [g0] = createInMemoryGroups(1);
    expect(() => g0.allReduce([1, 2] as never)).toThrow(/expected a HostTensor or a typed array/);
  });
});
