/** Small shared helpers for the data tests. */
import { HostTensor } from '../../src/tensor/host-tensor.js';

/** `[0, 1, ..., n-1]`. */
export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Every batch of one pass. */
export async function collect<B>(loader: AsyncIterable<B>): Promise<B[]> {
  const out: B[] = [];
  for await (const b of loader) out.push(b);
  return out;
}

/** A batch that is a 1-D HostTensor, as plain numbers. */
export function rows(batch: unknown): number[] {
  if (!(batch instanceof HostTensor)) throw new TypeError(`expected a HostTensor batch, got ${String(batch)}`);
  return batch.toArray();
}

/** One pass of a loader whose batches are 1-D HostTensors, as index lists. */
export async function indexBatches(loader: AsyncIterable<unknown>): Promise<number[][]> {
  return (await collect(loader)).map(rows);
}

/**
 * What Accelerate's `gather_for_metrics` returns over a whole pass, computed
 * without a process group: per step, concatenate the ranks' batches in rank
 * order; on the last step keep only the first `remainder` items (when > 0).
 */
export function gatherForMetrics(perRank: number[][][], remainder: number): number[] {
  const steps = perRank[0].length;
  for (const r of perRank) {
    if (r.length !== steps) throw new Error(`ranks have different step counts: ${perRank.map((x) => x.length).join(', ')}`);
  }
  const out: number[] = [];
  for (let s = 0; s < steps; s++) {
    let g = perRank.flatMap((r) => r[s]);
    if (s === steps - 1 && remainder > 0) g = g.slice(0, remainder);
    out.push(...g);
  }
  return out;
}
