/**
 * Process groups whose "ranks" all live in this one process, for testing the
 * logic composed on top of {@link ProcessGroup} (collectives on nested data,
 * object collectives, debug checks) without spawning processes. Real
 * multi-process behaviour is tested over gloo.
 *
 * Each rank's collective resolves once every rank of the group has issued
 * the matching call; calls are matched by their position in each rank's
 * sequence, as in c10d. A rank issuing a different collective, or data of a
 * different size, fails the call on every rank with a message naming what
 * each rank did, and the group stays failed (like a broken communicator).
 * @module
 */
import type { ProcessGroup, ReduceOp, Work } from '../interfaces/process-group.js';
import { HostTensor, dtypeOfHostArray, isHostArray, type DType, type HostArray } from '../tensor/host-tensor.js';
import { hostTensorToNumbers, numbersToHostArray } from '../ops/tensor-ops.js';

/** Options of {@link createInMemoryGroups}. */
export interface InMemoryGroupOptions {
  /** Fail a collective that not every rank issued within this time (default 10 000 ms). */
  timeoutMs?: number;
}

type Payload = HostTensor | HostArray;

interface Call {
  rank: number;
  op: string;
  summary: string;
  args: unknown;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

interface Slot {
  op: string;
  seq: number;
  calls: Array<Call | undefined>;
  timer?: ReturnType<typeof setTimeout>;
}

interface P2PSend {
  data: Payload;
  resolve: () => void;
  reject: (e: Error) => void;
}

interface P2PRecv {
  data: Payload;
  resolve: () => void;
  reject: (e: Error) => void;
}

function arrayOf(x: Payload): HostArray {
  return x instanceof HostTensor ? x.data : x;
}

function dtypeOf(x: Payload): DType {
  return x instanceof HostTensor ? x.dtype : dtypeOfHostArray(x);
}

function describe(x: Payload): string {
  return x instanceof HostTensor ? `${x.dtype}[${x.shape.join(', ')}]` : `${dtypeOfHostArray(x)}(${x.length})`;
}

function checkPayload(x: unknown, what: string): Payload {
  if (x instanceof HostTensor || isHostArray(x)) return x as Payload;
  throw new TypeError(`in-memory group ${what}: expected a HostTensor or a typed array, got ${x === null ? 'null' : typeof x}.`);
}

function copyOf(x: Payload): Payload {
  const data = arrayOf(x).slice() as HostArray;
  return x instanceof HostTensor ? new HostTensor(data, x.shape, x.dtype) : data;
}

/** Element-wise reduction of `arrays` (all `dtype`, same length) with `op`. */
function reduceArrays(arrays: HostArray[], dtype: DType, op: ReduceOp): HostArray {
  const n = arrays[0].length;
  if (dtype === 'int64') {
    const srcs = arrays as BigInt64Array[];
    const out = new BigInt64Array(n);
    for (let i = 0; i < n; i++) {
      let acc = srcs[0][i];
      for (let r = 1; r < srcs.length; r++) {
        const v = srcs[r][i];
        if (op === 'sum' || op === 'avg') acc += v;
        else if (op === 'product') acc *= v;
        else if (op === 'max') acc = v > acc ? v : acc;
        else acc = v < acc ? v : acc;
      }
      out[i] = op === 'avg' ? acc / BigInt(srcs.length) : acc;
    }
    return out;
  }
  const values = arrays.map((a) => hostTensorToNumbers(new HostTensor(a, [n], dtype)));
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    let acc = values[0][i];
    for (let r = 1; r < values.length; r++) {
      const v = values[r][i];
      if (op === 'sum' || op === 'avg') acc += v;
      else if (op === 'product') acc *= v;
      else if (op === 'max') acc = Math.max(acc, v);
      else acc = Math.min(acc, v);
    }
    out[i] = op === 'avg' ? acc / values.length : acc;
  }
  return numbersToHostArray(out, dtype);
}

class World {
  readonly size: number;
  readonly timeoutMs: number;
  private readonly nextSeq: number[];
  private readonly slots = new Map<number, Slot>();
  private readonly sends = new Map<string, P2PSend[]>();
  private readonly recvs = new Map<string, P2PRecv[]>();
  broken: Error | undefined;

  constructor(size: number, timeoutMs: number) {
    this.size = size;
    this.timeoutMs = timeoutMs;
    this.nextSeq = new Array<number>(size).fill(0);
  }

  private fail(error: Error, calls: Iterable<Call | undefined>): void {
    this.broken ??= error;
    for (const c of calls) c?.reject(error);
  }

  /** Issue rank `rank`'s next collective; `complete` computes every rank's result once all arrived. */
  issue<R>(
    rank: number,
    op: string,
    summary: string,
    args: unknown,
    complete: (calls: Call[]) => unknown[],
    validate: (calls: Call[]) => string | undefined,
  ): Work<R> {
    let resolve!: (v: unknown) => void;
    let reject!: (e: Error) => void;
    let done = false;
    const promise = new Promise<unknown>((res, rej) => {
      resolve = (v) => {
        done = true;
        res(v);
      };
      reject = (e) => {
        done = true;
        rej(e);
      };
    });
    // Nobody may be awaiting yet when a failure is reported; avoid an unhandled rejection.
    promise.catch(() => undefined);
    const work: Work<R> = { wait: () => promise as Promise<R>, isCompleted: () => done };

    if (this.broken) {
      reject(new Error(`in-memory group is unusable after an earlier failure: ${this.broken.message}`, { cause: this.broken }));
      return work;
    }
    const seq = this.nextSeq[rank]++;
    const call: Call = { rank, op, summary, args, resolve, reject };
    let slot = this.slots.get(seq);
    if (!slot) {
      slot = { op, seq, calls: new Array(this.size).fill(undefined) };
      this.slots.set(seq, slot);
      const s = slot;
      s.timer = setTimeout(() => this.timeOut(s), this.timeoutMs);
      s.timer.unref?.();
    }
    slot.calls[rank] = call;
    if (slot.op !== op) {
      this.finishSlot(slot);
      const what = slot.calls
        .map((c, r) => (c ? `rank ${r} called ${c.summary}` : `rank ${r} has not issued it yet`))
        .join(', ');
      this.fail(
        new Error(
          `in-memory group: collective #${seq} does not match across ranks: ${what}. ` +
            'Every rank must issue the same collectives in the same order.',
        ),
        slot.calls,
      );
      return work;
    }
    if (slot.calls.every((c) => c !== undefined)) {
      this.finishSlot(slot);
      const calls = slot.calls as Call[];
      const problem = validate(calls);
      if (problem !== undefined) {
        const what = calls.map((c) => `rank ${c.rank} called ${c.summary}`).join(', ');
        this.fail(new Error(`in-memory group: ${op} #${seq}: ${problem} (${what}).`), calls);
        return work;
      }
      let results: unknown[];
      try {
        results = complete(calls);
      } catch (e) {
        this.fail(e as Error, calls);
        return work;
      }
      calls.forEach((c, r) => c.resolve(results[r]));
    }
    return work;
  }

  private finishSlot(slot: Slot): void {
    if (slot.timer) clearTimeout(slot.timer);
    this.slots.delete(slot.seq);
  }

  private timeOut(slot: Slot): void {
    this.slots.delete(slot.seq);
    const issued = slot.calls.flatMap((c, r) => (c ? [r] : []));
    const missing = slot.calls.flatMap((c, r) => (c ? [] : [r]));
    this.fail(
      new Error(
        `in-memory group: ${slot.op} #${slot.seq} timed out after ${this.timeoutMs} ms: ` +
          `rank(s) ${missing.join(', ')} never issued it (rank(s) ${issued.join(', ')} did).`,
      ),
      slot.calls,
    );
  }

  send(src: number, dst: number, tag: number, data: Payload): Work {
    return this.p2p((resolve, reject) => {
      const key = `${src}->${dst}#${tag}`;
      const waiting = this.recvs.get(key);
      const message: P2PSend = { data: copyOf(data), resolve, reject };
      if (waiting && waiting.length > 0) this.deliver(message, waiting.shift()!, key);
      else this.queue(this.sends, key, message, `rank ${src} sent to rank ${dst} (tag ${tag}) but it never received`);
    });
  }

  recv(src: number, dst: number, tag: number, data: Payload): Work {
    return this.p2p((resolve, reject) => {
      const key = `${src}->${dst}#${tag}`;
      const waiting = this.sends.get(key);
      const request: P2PRecv = { data, resolve, reject };
      if (waiting && waiting.length > 0) this.deliver(waiting.shift()!, request, key);
      else this.queue(this.recvs, key, request, `rank ${dst} waited for rank ${src} (tag ${tag}) but it never sent`);
    });
  }

  private p2p(start: (resolve: () => void, reject: (e: Error) => void) => void): Work {
    let done = false;
    const promise = new Promise<void>((res, rej) => {
      if (this.broken) {
        rej(new Error(`in-memory group is unusable after an earlier failure: ${this.broken.message}`));
        return;
      }
      start(
        () => {
          done = true;
          res();
        },
        (e) => {
          done = true;
          rej(e);
        },
      );
    });
    promise.catch(() => undefined);
    return { wait: () => promise, isCompleted: () => done };
  }

  private queue<E extends { reject: (e: Error) => void }>(map: Map<string, E[]>, key: string, entry: E, timeoutText: string): void {
    const list = map.get(key) ?? [];
    list.push(entry);
    map.set(key, list);
    const timer = setTimeout(() => {
      const i = list.indexOf(entry);
      if (i >= 0) {
        list.splice(i, 1);
        entry.reject(new Error(`in-memory group: ${timeoutText} within ${this.timeoutMs} ms.`));
      }
    }, this.timeoutMs);
    timer.unref?.();
  }

  private deliver(message: P2PSend, request: P2PRecv, key: string): void {
    const src = arrayOf(message.data);
    const dst = arrayOf(request.data);
    if (src.length !== dst.length || dtypeOf(message.data) !== dtypeOf(request.data)) {
      const error = new Error(
        `in-memory group: send/recv ${key} mismatch: sent ${describe(message.data)}, receive buffer is ${describe(request.data)}.`,
      );
      message.reject(error);
      request.reject(error);
      return;
    }
    (dst as Float64Array).set(src as Float64Array);
    message.resolve();
    request.resolve();
  }
}

function sameData(calls: Call[], pick: (c: Call) => Payload): string | undefined {
  const first = pick(calls[0]);
  for (const c of calls) {
    const x = pick(c);
    if (dtypeOf(x) !== dtypeOf(first) || arrayOf(x).length !== arrayOf(first).length) {
      return 'the ranks passed data of different dtypes or sizes';
    }
  }
  return undefined;
}

/** One rank's view of an in-memory group. Create with {@link createInMemoryGroups}. */
export class InMemoryProcessGroup implements ProcessGroup<HostTensor> {
  readonly rank: number;
  readonly size: number;
  readonly backend = 'in-memory';
  private readonly world: World;
  private destroyed = false;

  /** @internal Use {@link createInMemoryGroups}. */
  constructor(world: unknown, rank: number) {
    this.world = world as World;
    this.rank = rank;
    this.size = this.world.size;
  }

  private check(what: string): void {
    if (this.destroyed) throw new Error(`in-memory group rank ${this.rank}: ${what} called after destroy().`);
  }

  private checkRank(r: number, name: string, what: string): void {
    if (!Number.isInteger(r) || r < 0 || r >= this.size) {
      throw new RangeError(`in-memory group ${what}: ${name} ${r} is not a rank of this group (0..${this.size - 1}).`);
    }
  }

  allReduce(data: HostTensor | HostArray, op: ReduceOp = 'sum'): Work {
    this.check('allReduce');
    const x = checkPayload(data, 'allReduce');
    return this.world.issue(
      this.rank,
      'allReduce',
      `allReduce(${describe(x)}, ${op})`,
      { data: x, op },
      (calls) => {
        const reduced = reduceArrays(calls.map((c) => arrayOf((c.args as { data: Payload }).data)), dtypeOf(x), op);
        for (const c of calls) (arrayOf((c.args as { data: Payload }).data) as Float64Array).set(reduced as Float64Array);
        return calls.map(() => undefined);
      },
      (calls) =>
        calls.some((c) => (c.args as { op: ReduceOp }).op !== op)
          ? 'the ranks asked for different reduce ops'
          : sameData(calls, (c) => (c.args as { data: Payload }).data),
    );
  }

  broadcast(data: HostTensor | HostArray, src: number): Work {
    this.check('broadcast');
    const x = checkPayload(data, 'broadcast');
    this.checkRank(src, 'src', 'broadcast');
    return this.world.issue(
      this.rank,
      'broadcast',
      `broadcast(${describe(x)}, src ${src})`,
      { data: x, src },
      (calls) => {
        const source = arrayOf((calls[src].args as { data: Payload }).data);
        for (const c of calls) {
          if (c.rank !== src) (arrayOf((c.args as { data: Payload }).data) as Float64Array).set(source as Float64Array);
        }
        return calls.map(() => undefined);
      },
      (calls) =>
        calls.some((c) => (c.args as { src: number }).src !== src)
          ? 'the ranks named different source ranks'
          : sameData(calls, (c) => (c.args as { data: Payload }).data),
    );
  }

  allGather(data: HostTensor | HostArray): Work<Array<HostTensor | HostArray>> {
    this.check('allGather');
    const x = checkPayload(data, 'allGather');
    return this.world.issue(
      this.rank,
      'allGather',
      `allGather(${describe(x)})`,
      { data: x },
      (calls) => {
        // Snapshot once, then hand every rank its own copies.
        const parts = calls.map((c) => copyOf((c.args as { data: Payload }).data));
        return calls.map(() => parts.map(copyOf));
      },
      (calls) => {
        const problem = sameData(calls, (c) => (c.args as { data: Payload }).data);
        if (problem) return problem;
        const shapes = calls.map((c) => {
          const d = (c.args as { data: Payload }).data;
          return d instanceof HostTensor ? d.shape.join(',') : 'array';
        });
        return shapes.every((s) => s === shapes[0]) ? undefined : 'the ranks passed tensors of different shapes';
      },
    );
  }

  reduceScatter(output: HostTensor | HostArray, inputs: Array<HostTensor | HostArray>, op: ReduceOp = 'sum'): Work {
    this.check('reduceScatter');
    const out = checkPayload(output, 'reduceScatter');
    const ins = inputs.map((i) => checkPayload(i, 'reduceScatter'));
    if (ins.length !== this.size) {
      throw new RangeError(`in-memory group reduceScatter: needs ${this.size} inputs (one per rank), got ${ins.length}.`);
    }
    return this.world.issue(
      this.rank,
      'reduceScatter',
      `reduceScatter(${describe(out)}, ${ins.length} inputs, ${op})`,
      { out, ins, op },
      (calls) => {
        for (const target of calls) {
          const parts = calls.map((c) => arrayOf((c.args as { ins: Payload[] }).ins[target.rank]));
          const reduced = reduceArrays(parts, dtypeOf(out), op);
          (arrayOf((target.args as { out: Payload }).out) as Float64Array).set(reduced as Float64Array);
        }
        return calls.map(() => undefined);
      },
      (calls) => {
        if (calls.some((c) => (c.args as { op: ReduceOp }).op !== op)) return 'the ranks asked for different reduce ops';
        for (const target of calls) {
          const o = (target.args as { out: Payload }).out;
          for (const c of calls) {
            const i = (c.args as { ins: Payload[] }).ins[target.rank];
            if (arrayOf(i).length !== arrayOf(o).length || dtypeOf(i) !== dtypeOf(o)) {
              return `input ${target.rank} of rank ${c.rank} does not match rank ${target.rank}'s output`;
            }
          }
        }
        return undefined;
      },
    );
  }

  send(data: HostTensor | HostArray, dst: number, tag = 0): Work {
    this.check('send');
    this.checkRank(dst, 'dst', 'send');
    return this.world.send(this.rank, dst, tag, checkPayload(data, 'send'));
  }

  recv(data: HostTensor | HostArray, src: number, tag = 0): Work {
    this.check('recv');
    this.checkRank(src, 'src', 'recv');
    return this.world.recv(src, this.rank, tag, checkPayload(data, 'recv'));
  }

  barrier(): Work {
    this.check('barrier');
    return this.world.issue(
      this.rank,
      'barrier',
      'barrier()',
      undefined,
      (calls) => calls.map(() => undefined),
      () => undefined,
    );
  }

  async newGroup(ranks: readonly number[]): Promise<ProcessGroup<HostTensor> | null> {
    this.check('newGroup');
    const members = [...new Set(ranks)].sort((a, b) => a - b);
    for (const r of members) this.checkRank(r, 'rank', 'newGroup');
    if (members.length === 0) throw new RangeError('in-memory group newGroup: needs at least one rank.');
    const key = members.join(',');
    const work = this.world.issue<ProcessGroup<HostTensor> | null>(
      this.rank,
      'newGroup',
      `newGroup([${key}])`,
      { key },
      (calls) => {
        const sub = new World(members.length, this.world.timeoutMs);
        return calls.map((c) => {
          const index = members.indexOf(c.rank);
          return index >= 0 ? new InMemoryProcessGroup(sub, index) : null;
        });
      },
      (calls) => (calls.every((c) => (c.args as { key: string }).key === key) ? undefined : 'the ranks asked for different members'),
    );
    return work.wait();
  }

  async destroy(): Promise<void> {
    this.destroyed = true;
  }
}

/**
 * `size` connected {@link InMemoryProcessGroup}s, one per rank (index =
 * rank), living in this process. Run each rank's code concurrently (e.g.
 * `Promise.all(groups.map((g) => rankMain(g)))`).
 *
 * Carries HostTensors and typed arrays; reductions decode float16/bfloat16
 * (a bare Uint16Array is read as float16, as `dtypeOfHostArray` says).
 * In subgroups from `newGroup`, ranks (`src`, `dst`) are numbered inside
 * the subgroup (members sorted ascending).
 */
export function createInMemoryGroups(size: number, options: InMemoryGroupOptions = {}): InMemoryProcessGroup[] {
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError(`createInMemoryGroups: size must be a positive integer, got ${size}.`);
  }
  const world = new World(size, options.timeoutMs ?? 10_000);
  return Array.from({ length: size }, (_, rank) => new InMemoryProcessGroup(world, rank));
}
