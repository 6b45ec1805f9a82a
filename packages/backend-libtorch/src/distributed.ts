/**
 * Core's {@link ProcessGroup} over c10d's ProcessGroupGloo and a TCPStore: CPU
 * collectives between processes on libtorch tensors or plain typed arrays.
 * @module
 */
import { dtypeOfHostArray, type HostArray, type KeyValueStore, type ProcessGroup, type ProcessGroupOptions, type ReduceOp, type Work } from '@accelerate/core';
import { c10d, native, type NativeGroup, type NativeHandle, type NativeWork } from './native.js';
import { Tensor } from './tensor.js';

/** What the group communicates: libtorch tensors or plain typed arrays. */
export type GroupData = Tensor | HostArray;

/** The native group's extras for hang diagnosis (c10d.cc): a label for emulated ops, the sequence counter. */
type DiagGroup = NativeGroup & {
  allReduce(t: NativeHandle, op: string, label?: string): NativeWork;
  sequence(): number;
};

/** Collective timeout when none is given: c10d's default for gloo (30 minutes). */
export const DEFAULT_TIMEOUT_MS = 1_800_000;

/**
 * gloo worker threads of a process group when none is given: 2, i.e. at most two
 * collectives (e.g. DDP gradient buckets) in flight at once; each group also has one
 * transport thread. They mostly wait on sockets: with one thread per rank, 2-process DDP
 * on 2 cores measured up to 35% fewer steps/s, so the default does not shrink with
 * OMP_NUM_THREADS. Pass `threads` to {@link GlooProcessGroup.init} to change it.
 */
export const DEFAULT_GLOO_THREADS = 2;

/** This process's CPU thread settings (for `accelerate env`, launch checks and tests). */
export interface ThreadSettings {
  /** libtorch intra-op threads (`torch.get_num_threads()`), set from OMP_NUM_THREADS when the addon loads. */
  intraOp: number;
  /** libtorch inter-op threads (`torch.get_num_interop_threads()`), set likewise. */
  interOp: number;
  /** OMP_NUM_THREADS as the addon read it, or null when unset. */
  ompNumThreads: number | null;
  /** gloo worker threads a new process group gets by default ({@link DEFAULT_GLOO_THREADS}). */
  glooThreads: number;
}

/** The thread settings the addon applied at load (from OMP_NUM_THREADS, which the launcher divides among local ranks). */
export function threadSettings(): ThreadSettings {
  const t = (native as unknown as { threadSettings(): Omit<ThreadSettings, 'glooThreads'> }).threadSettings();
  return { ...t, glooThreads: DEFAULT_GLOO_THREADS };
}

/**
 * A collective in flight. `wait()` resolves once it finished on this rank; `waitSync()`
 * blocks the JS thread for the same result (no promise, no worker thread: cheap enough
 * for hooks inside backward). The finisher (writing host arrays back, unpacking outputs)
 * runs once whichever is called, and the outcome, success or error, is memoised.
 */
class GlooWork<R> implements Work<R> {
  private promise?: Promise<R>;
  private outcome?: { ok: true; value: R } | { ok: false; error: unknown };
  constructor(
    private readonly inner: NativeWork | null,
    private readonly finish: (outs: NativeHandle[] | undefined) => R,
  ) {}
  private result(): R {
    const o = this.outcome!;
    if (!o.ok) throw o.error;
    return o.value;
  }
  private settle(outs: NativeHandle[] | undefined): R {
    if (!this.outcome) {
      try {
        this.outcome = { ok: true, value: this.finish(outs) };
      } catch (error) {
        this.outcome = { ok: false, error };
      }
    }
    return this.result();
  }
  wait(): Promise<R> {
    this.promise ??= (async () => {
      let outs: NativeHandle[] | undefined;
      try {
        outs = this.inner && !this.outcome ? await this.inner.wait() : undefined;
      } catch (error) {
        this.outcome ??= { ok: false, error };
      }
      return this.settle(outs);
    })();
    return this.promise;
  }
  waitSync(): R {
    if (this.outcome) return this.result();
    let outs: NativeHandle[] | undefined;
    try {
      outs = this.inner ? this.inner.waitSync() : undefined;
    } catch (error) {
      this.outcome = { ok: false, error };
      throw error;
    }
    return this.settle(outs);
  }
  isCompleted(): boolean {
    return this.outcome?.ok === true || (this.inner?.isCompleted() ?? false);
  }
}

/** Host arrays travel as a temporary tensor; results are copied back in place. */
function asTensor(data: GroupData): { handle: NativeHandle; writeBack: () => void; isHost: boolean } {
  if (data instanceof Tensor) {
    if (!data.isContiguous()) throw new Error('collectives need a contiguous tensor: call .contiguous() first');
    return { handle: data._h, writeBack: () => {}, isHost: false };
  }
  const handle = native.fromBuffer(data, [data.length], dtypeOfHostArray(data));
  return {
    handle,
    isHost: true,
    writeBack: () => {
      const buf = native.toBuffer(handle);
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength).set(new Uint8Array(buf));
      handle.dispose();
    },
  };
}

function toHostArray(h: NativeHandle, like: HostArray): HostArray {
  const buf = native.toBuffer(h);
  h.dispose();
  return new (like.constructor as new (b: ArrayBuffer) => HostArray)(buf);
}

/**
 * A process group over gloo (CPU). Every rank must issue collectives in the same order.
 *
 * Hangs are diagnosed: every collective takes the group's next sequence number and
 * each rank's position (op, number, shape, state) is copied to the TCPStore by a
 * background thread (at most every 100 ms, off the hot path). A wait that exceeds the
 * timeout, or fails because a peer died, rejects with an error naming where every rank
 * is, e.g. `rank 1 is at allReduce #2 [4] (completed); ranks 0,2 at allReduce #3 [4]
 * (waiting)`. `ACCELERATE_C10D_DIAG=0` turns the recording off.
 */
export class GlooProcessGroup implements ProcessGroup<Tensor> {
  readonly backend = 'gloo';
  readonly store: KeyValueStore;
  private created = 0;

  private constructor(
    private readonly g: DiagGroup,
    readonly rank: number,
    readonly size: number,
    private readonly host: string,
    private readonly path: string,
    /** gloo worker threads of this group (subgroups inherit them). */
    readonly threads: number,
  ) {
    this.store = {
      set: (key, value) => g.storeSet(key, typeof value === 'string' ? new TextEncoder().encode(value) : value),
      get: (key) => g.storeGet(key),
      add: (key, delta) => g.storeAdd(key, delta),
    };
  }

  /**
   * Rendezvous at `masterAddr:masterPort` (rank 0 hosts the TCPStore) and connect the ranks.
   * `timeoutMs` bounds every collective's wait and the rendezvous (default 30 minutes);
   * `threads` is gloo's worker threads (default {@link DEFAULT_GLOO_THREADS}).
   *
   * Under torchrun (torch ≥ 2), the agent process already hosts the TCPStore on the
   * master port and says so with `TORCHELASTIC_USE_AGENT_STORE=True`: then every rank
   * joins it as a client, under the key prefix `/worker/attempt_<TORCHELASTIC_RESTART_COUNT>`
   * as torch.distributed does. `agentStore` overrides what the environment says.
   */
  static async init(options: ProcessGroupOptions & { threads?: number; agentStore?: boolean; env?: NodeJS.ProcessEnv }): Promise<GlooProcessGroup> {
    if (options.backend && options.backend !== 'gloo') {
      throw new Error(`backend-libtorch: process group backend '${options.backend}' is not available in this build; use 'gloo'`);
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      throw new RangeError(`GlooProcessGroup.init: timeoutMs must be a positive number of milliseconds, got ${String(options.timeoutMs)}`);
    }
    const host = options.masterAddr === 'localhost' ? '127.0.0.1' : options.masterAddr;
    const threads = options.threads ?? DEFAULT_GLOO_THREADS;
    if (!(Number.isInteger(threads) && threads > 0)) throw new RangeError(`GlooProcessGroup.init: threads must be a positive integer, got ${String(options.threads)}`);
    const env = options.env ?? process.env;
    const agentStore = options.agentStore ?? env.TORCHELASTIC_USE_AGENT_STORE === 'True';
    const agentPrefix = agentStore ? `/worker/attempt_${env.TORCHELASTIC_RESTART_COUNT ?? '0'}` : undefined;
    if (agentStore && Number(native.torchVersion.split('.')[0]) < 2) {
      // torch 2's store server expects a handshake 1.x clients do not send: it would hang or drop the connection.
      throw new Error(
        `GlooProcessGroup.init: torchrun hosts the rendezvous store in its agent (TORCHELASTIC_USE_AGENT_STORE=True, a torch 2.x torchrun), ` +
          `and this addon's libtorch ${native.torchVersion} cannot talk to a torch 2 store. Build the addon against the torch torchrun comes from ` +
          `(LIBTORCH="$(python -c 'import torch, os; print(os.path.dirname(torch.__file__))')" npm rebuild @accelerate/backend-libtorch), ` +
          `or start the ranks with \`accelerate launch\`, or keep this build and run ` +
          `\`TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --standalone …\` (several machines: --rdzv-backend c10d --rdzv-endpoint host:port), which leaves the store to rank 0.`,
      );
    }
    const g = await c10d.initGroup(host, options.masterPort, options.rank, options.worldSize, Math.round(timeoutMs), threads, agentPrefix);
    return new GlooProcessGroup(g as DiagGroup, options.rank, options.worldSize, host, 'w', threads);
  }

  /** Collectives issued on this group so far (the `#n` of diagnostics; point-to-point ops do not count). */
  sequenceNumber(): number {
    return this.g.sequence();
  }

  /** @internal the native group, for DDP (ddp.ts). */
  get _native(): NativeGroup {
    return this.g;
  }

  allReduce(data: GroupData, op: ReduceOp = 'sum'): Work {
    const t = asTensor(data);
    const work = this.g.allReduce(t.handle, op === 'avg' ? 'sum' : op);
    return new GlooWork(work, () => {
      if (op === 'avg') native.op(native.opLookup('aten::div_', 'Scalar').id, t.handle, this.size);
      t.writeBack();
    });
  }

  broadcast(data: GroupData, src: number): Work {
    const t = asTensor(data);
    return new GlooWork(this.g.broadcast(t.handle, src), () => t.writeBack());
  }

  allGather(data: GroupData): Work<GroupData[]> {
    const t = asTensor(data);
    return new GlooWork(this.g.allGather(t.handle), (outs) => {
      const handles = outs ?? [];
      if (t.isHost) {
        t.writeBack();
        return handles.map((h) => toHostArray(h, data as HostArray));
      }
      return handles.map((h) => new Tensor(h));
    });
  }

  /** gloo has no reduce_scatter: all-reduce the concatenated inputs and keep this rank's part. */
  reduceScatter(output: GroupData, inputs: GroupData[], op: ReduceOp = 'sum'): Work {
    if (inputs.length !== this.size) throw new Error(`reduceScatter: got ${inputs.length} inputs for a group of ${this.size} ranks`);
    const parts = inputs.map(asTensor);
    const flat = native.op(
      native.opLookup('aten::cat', '').id,
      parts.map((p) => native.op(native.opLookup('aten::reshape', '').id, p.handle, [-1])),
      0,
    ) as NativeHandle;
    const n = Number(native.numel(flat)) / this.size;
    const work = this.g.allReduce(flat, op === 'avg' ? 'sum' : op, 'reduceScatter');
    return new GlooWork(work, () => {
      if (op === 'avg') native.op(native.opLookup('aten::div_', 'Scalar').id, flat, this.size);
      const mine = native.op(native.opLookup('aten::narrow', '').id, flat, 0, this.rank * n, n) as NativeHandle;
      const out = asTensor(output);
      const view = native.op(native.opLookup('aten::view', '').id, out.handle, [-1]) as NativeHandle;
      native.copyNoGrad(view, mine);
      out.writeBack();
      for (const p of parts) if (p.isHost) p.handle.dispose();
      flat.dispose();
    });
  }

  /**
   * How each collective is implemented in this build: `native` (one gloo call) or the
   * emulation. `allGatherInto`/`reduceScatterInto` are native on libtorch 2.x; on 1.13
   * they are `allgather-into-views` (the list allgather writing into views of the
   * output) and `alltoall+sum` (an alltoall of the input, then a local reduction).
   */
  readonly implementations: Readonly<Record<string, string>> = Object.freeze({
    allReduce: 'native',
    broadcast: 'native',
    allGather: 'native',
    reduceScatter: 'allreduce',
    allGatherInto: c10d.c10dImplementations.allGatherInto,
    reduceScatterInto: c10d.c10dImplementations.reduceScatterInto,
  });

  /**
   * Every rank's `input` into `output` (contiguous, `size` × as many elements, rank r's at
   * `[r * n, (r + 1) * n)`), in place: all_gather_into_tensor. Same dtype on both; any
   * dtype (bfloat16 and float16 included). Host arrays work too (copied in and back).
   */
  allGatherInto(output: GroupData, input: GroupData): Work {
    const o = asTensor(output);
    const i = asTensor(input);
    const work = this.g.allGatherInto(o.handle, i.handle);
    return new GlooWork(work, () => {
      o.writeBack();
      if (i.isHost) i.handle.dispose();
    });
  }

  /**
   * Reduce `input` (contiguous, `size` × as many elements as `output`) across ranks and
   * leave chunk `rank` of the result in `output`, in place: reduce_scatter_tensor. `avg`
   * is a sum divided by the group size (floating dtypes only). float32/float64 reduce in
   * their own precision; float16/bfloat16 reduce in float32 on libtorch 1.13 (the
   * emulation) and in gloo's own arithmetic on 2.x.
   */
  reduceScatterInto(output: GroupData, input: GroupData, op: ReduceOp = 'sum'): Work {
    const o = asTensor(output);
    const i = asTensor(input);
    const work = this.g.reduceScatterInto(o.handle, i.handle, op);
    return new GlooWork(work, () => {
      o.writeBack();
      if (i.isHost) i.handle.dispose();
    });
  }

  send(data: GroupData, dst: number, tag = 0): Work {
    const t = asTensor(data);
    return new GlooWork(this.g.send(t.handle, dst, tag), () => {
      if (t.isHost) t.handle.dispose();
    });
  }

  recv(data: GroupData, src: number, tag = 0): Work {
    const t = asTensor(data);
    return new GlooWork(this.g.recv(t.handle, src, tag), () => t.writeBack());
  }

  barrier(): Work {
    return new GlooWork(this.g.barrier(), () => undefined);
  }

  async newGroup(ranks: readonly number[]): Promise<ProcessGroup<Tensor> | null> {
    for (const r of ranks) if (!Number.isInteger(r) || r < 0 || r >= this.size) throw new RangeError(`newGroup: rank ${r} is not in 0..${this.size - 1}`);
    const name = `${this.path}.${this.created++}`;
    const sub = await this.g.newGroup([...ranks], name, this.host);
    if (!sub) return null;
    return new GlooProcessGroup(sub as DiagGroup, ranks.indexOf(this.rank), ranks.length, this.host, name, this.threads);
  }

  async destroy(): Promise<void> {
    this.g.destroy();
  }
}
