/**
 * TEST DOUBLE ONLY: an in-memory ProcessGroup for P simulated ranks running
 * concurrently as async functions in one process. Implements broadcast,
 * allGather and barrier with the real contract (collectives matched by call
 * order on each rank, issued synchronously, awaited later); everything else
 * throws. Not for production use.
 */
import type { ProcessGroup, Work } from '../../src/interfaces/process-group.js';
import type { HostArray } from '../../src/tensor/host-tensor.js';

interface Arrival {
  rank: number;
  op: string;
  data?: HostArray;
  src?: number;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

class Hub {
  private readonly slots = new Map<number, Arrival[]>();
  constructor(readonly size: number) {}

  join<R>(seq: number, arrival: Omit<Arrival, 'resolve' | 'reject'>): Work<R> {
    let done = false;
    const promise = new Promise<R>((resolve, reject) => {
      const list = this.slots.get(seq) ?? [];
      this.slots.set(seq, list);
      list.push({ ...arrival, resolve: resolve as (v: unknown) => void, reject });
      if (list.length === this.size) {
        this.slots.delete(seq);
        this.complete(seq, list);
      }
    });
    void promise.then(
      () => (done = true),
      () => (done = true),
    );
    return { wait: () => promise, isCompleted: () => done };
  }

  private complete(seq: number, list: Arrival[]): void {
    const ops = new Set(list.map((a) => a.op));
    if (ops.size > 1) {
      const err = new Error(`collective #${seq} mismatched across ranks: ${list.map((a) => `rank ${a.rank}: ${a.op}`).join(', ')}`);
      list.forEach((a) => a.reject(err));
      return;
    }
    const op = list[0].op;
    if (op === 'barrier') {
      list.forEach((a) => a.resolve(undefined));
      return;
    }
    if (op === 'broadcast') {
      const src = list.find((a) => a.rank === list[0].src);
      if (!src || list.some((a) => a.src !== list[0].src)) {
        list.forEach((a) => a.reject(new Error(`broadcast #${seq}: ranks disagree on the source`)));
        return;
      }
      for (const a of list) {
        if (a.data!.length !== src.data!.length || a.data!.constructor !== src.data!.constructor) {
          list.forEach((b) => b.reject(new Error(`broadcast #${seq}: rank ${a.rank} buffer ${a.data!.constructor.name}(${a.data!.length}) != source ${src.data!.constructor.name}(${src.data!.length})`)));
          return;
        }
      }
      for (const a of list) if (a !== src) (a.data as Float64Array).set(src.data as Float64Array);
      list.forEach((a) => a.resolve(undefined));
      return;
    }
    if (op === 'allGather') {
      const byRank = [...list].sort((a, b) => a.rank - b.rank).map((a) => (a.data as Float64Array).slice());
      list.forEach((a) => a.resolve(byRank.map((x) => x.slice())));
      return;
    }
    list.forEach((a) => a.reject(new Error(`unsupported op ${op}`)));
  }
}

/** TEST DOUBLE: one rank's view of the in-memory group. */
export class InMemoryTestProcessGroup implements ProcessGroup<never> {
  readonly backend = 'in-memory-test-double';
  private seq = 0;
  /** Number of collectives this rank issued. */
  get collectivesIssued(): number {
    return this.seq;
  }

  constructor(
    private readonly hub: Hub,
    readonly rank: number,
  ) {}

  get size(): number {
    return this.hub.size;
  }

  broadcast(data: HostArray, src: number): Work {
    return this.hub.join<void>(this.seq++, { rank: this.rank, op: 'broadcast', data, src });
  }

  allGather(data: HostArray): Work<HostArray[]> {
    return this.hub.join<HostArray[]>(this.seq++, { rank: this.rank, op: 'allGather', data });
  }

  barrier(): Work {
    return this.hub.join<void>(this.seq++, { rank: this.rank, op: 'barrier' });
  }

  allReduce(): Work {
    throw new Error('InMemoryTestProcessGroup: allReduce is not implemented in this test double');
  }
  reduceScatter(): Work {
    throw new Error('InMemoryTestProcessGroup: reduceScatter is not implemented in this test double');
  }
  send(): Work {
    throw new Error('InMemoryTestProcessGroup: send is not implemented in this test double');
  }
  recv(): Work {
    throw new Error('InMemoryTestProcessGroup: recv is not implemented in this test double');
  }
  newGroup(): Promise<ProcessGroup<never> | null> {
    throw new Error('InMemoryTestProcessGroup: newGroup is not implemented in this test double');
  }
  async destroy(): Promise<void> {}
}

/** TEST DOUBLE: `size` connected ranks. */
export function createInMemoryTestGroups(size: number): InMemoryTestProcessGroup[] {
  const hub = new Hub(size);
  return Array.from({ length: size }, (_, r) => new InMemoryTestProcessGroup(hub, r));
}
