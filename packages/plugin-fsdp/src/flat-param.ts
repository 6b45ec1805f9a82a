/**
 * One FSDP unit: the parameters of a wrapped module (those not in a nested
 * unit) laid out back to back in one flat buffer, of which this rank keeps
 * only its 1/S shard between uses (S = the shard group's size).
 *
 * - `full` is the flat buffer of every parameter, in the compute dtype. The
 *   module's parameters are views into it (`setData`), made once; between
 *   uses its storage is released (`freeStorage`), so the views cost nothing,
 *   and given back and re-filled by an all-gather before forward and before
 *   backward. Autograd's saved views see the re-filled memory.
 * - `shard` is this rank's `[rank * chunk, (rank + 1) * chunk)` of the flat
 *   buffer in float32 (the master copy): what the optimizer steps, through
 *   one leaf view per original parameter (`leaves`, possibly empty).
 * - `gradShard` receives the reduce-scattered gradient; the leaves' `.grad`
 *   are views into it.
 *
 * With S = 1 (NO_SHARD, or one process) `full` and `shard` are the same
 * memory and nothing is gathered; gradients are still averaged across the
 * replicas.
 * @module
 */
import type { DType, HookHandle, ProcessGroup, ShardingCapability, Work, BackendRoot, ReduceOp } from '@accelerate/core';

/** One original parameter inside a unit's flat buffer. */
export interface ParamSlot<T> {
  /** Full dotted name, as `namedParameters` gives it. */
  readonly name: string;
  /** The module's parameter object (a view into `full` once wrapped). */
  readonly param: T;
  readonly shape: number[];
  readonly numel: number;
  /** First element in the flat buffer. */
  readonly offset: number;
  /** Whether the parameter trains (its gradient is reduced; its leaf requires grad). */
  readonly requiresGrad: boolean;
  /** This rank's part of the parameter: elements [pieceOffset, pieceOffset + pieceNumel) of it flattened. */
  readonly pieceOffset: number;
  readonly pieceNumel: number;
}

/** The groups and numbers a unit communicates with. */
export interface UnitComm<T> {
  /** Ranks a parameter is sharded over (size S); undefined when S = 1. */
  readonly shardGroup: ProcessGroup<T> | undefined;
  /** Ranks holding the same shard (size R = world / S); undefined when R = 1. */
  readonly replicaGroup: ProcessGroup<T> | undefined;
  /** This rank's index in the shard group (0 when S = 1). */
  readonly shardRank: number;
  readonly shardSize: number;
  /** World size: gradients are averaged over it, as DDP does. */
  readonly worldSize: number;
}

/** Dtypes of a unit's buffers (FSDP's mixed-precision policy). */
export interface UnitDtypes {
  /** Dtype of the parameters during forward and backward (the gathered buffer). */
  readonly compute: DType;
  /** Dtype gradients are reduced in. */
  readonly reduce: DType;
}

/** Blocks until `work` completed: FSDP gathers inside forward and backward hooks, which cannot await. */
export function waitNow<R>(work: Work<R>, what: string): R {
  if (!work.waitSync) {
    throw new Error(`FSDP needs a process group that can wait for a collective synchronously (Work.waitSync) to ${what}; this backend's process group cannot.`);
  }
  return work.waitSync();
}

/**
 * A unit's flat parameter. Created by the strategy for each wrapped module;
 * it never decides *when* to gather or reshard (the strategy's hooks do).
 */
export class FlatUnit<T, M> {
  readonly slots: ParamSlot<T>[];
  /** Elements of all parameters. */
  readonly numel: number;
  /** Elements per rank: ceil(numel / S). The flat buffer has chunk * S elements (the tail is padding). */
  readonly chunk: number;
  /** Gathered parameters in the compute dtype (storage released while resharded). */
  readonly full: T;
  /** This rank's float32 master shard (same memory as `full` when S = 1 and the dtypes agree). */
  readonly shard: T;
  /** Reduced gradient of the shard. */
  readonly gradShard: T;
  /** Optimizer stand-ins: one leaf view of `shard` per slot (same order). */
  readonly leaves: T[];
  /** Leaf by original parameter. */
  readonly leafOf = new Map<T, T>();
  private readonly fullAliasesShard: boolean;
  private gathering: { work: Work<unknown>; input: T | undefined } | undefined;
  /** The unit's gradients, laid out like `full`, while backward accumulates them ({@link prepareGradients}). */
  private gradFlat: T | undefined;
  /** Reduce-scatters issued in this backward, finished by {@link finishReduce}. */
  private pendingReduce: { work: Work<unknown>; out: T; flat: T } | undefined;
  /** Parameters whose gradient arrived in the current backward. */
  readonly ready = new Set<T>();
  /** Set by the strategy while this unit's backward is running (or done) in the current backward pass. */
  inBackward = false;
  /** Gradients were reduced in the current backward. */
  reduced = false;
  private readonly hooks: HookHandle[] = [];

  constructor(
    readonly name: string,
    readonly module: M,
    params: ReadonlyArray<{ name: string; param: T }>,
    private readonly backend: BackendRoot<T>,
    private readonly sharding: ShardingCapability<T, M>,
    readonly comm: UnitComm<T>,
    readonly dtypes: UnitDtypes,
    /** Device of the shard and its optimizer state (`cpu` with cpu offload). */
    readonly shardDevice: string,
    /** Device of the gathered parameters (this process's device). */
    readonly computeDevice: string,
  ) {
    const S = comm.shardSize;
    let offset = 0;
    const raw = params.map(({ name: n, param }) => {
      const shape = backend.shape(param);
      const numel = sharding.numel(param);
      const at = offset;
      offset += numel;
      return { name: n, param, shape, numel, offset: at, requiresGrad: sharding.requiresGrad(param) };
    });
    this.numel = offset;
    this.chunk = Math.max(1, Math.ceil(offset / S));
    const lo = comm.shardRank * this.chunk;
    const hi = lo + this.chunk;
    this.slots = raw.map((s) => {
      const a = Math.max(lo, s.offset);
      const b = Math.min(hi, s.offset + s.numel);
      const pieceNumel = Math.max(0, b - a);
      return { ...s, pieceOffset: pieceNumel === 0 ? 0 : a - s.offset, pieceNumel };
    });

    const padded = this.chunk * S;
    // The parameters' current values, before any of them is re-pointed.
    const master = backend.emptyTensor!([padded], 'float32', this.computeDevice);
    sharding.zero(master);
    for (const s of this.slots) this.copyAt(master, s.offset, s.shape, s.param);

    this.fullAliasesShard = S === 1 && dtypes.compute === 'float32' && this.shardDevice === this.computeDevice;
    if (this.fullAliasesShard) {
      this.full = master;
      this.shard = master;
    } else {
      // The shard gets memory of its own; `master` goes away.
      const mine = backend.narrow(master, 0, lo, this.chunk);
      const moved = this.toDevice(mine, this.shardDevice);
      this.shard = sharding.flatten(moved);
      this.free(mine, moved);
      this.full = backend.emptyTensor!([padded], dtypes.compute, this.computeDevice);
      sharding.copy(this.full, master);
      backend.dispose?.(master);
    }
    for (const s of this.slots) {
      const view = sharding.view(this.full, s.offset, s.shape);
      sharding.setData(s.param, view);
      this.free(view);
    }
    this.gradShard = backend.emptyTensor!([this.chunk], 'float32', this.shardDevice);
    sharding.zero(this.gradShard);
    this.leaves = this.slots.map((s) => {
      // An empty piece (the parameter lies in other ranks' shards) is a 0-element view at 0.
      const piece = sharding.view(this.shard, s.pieceNumel === 0 ? 0 : s.offset + s.pieceOffset - lo, [s.pieceNumel]);
      const leaf = sharding.leafView(piece, s.requiresGrad);
      this.leafOf.set(s.param, leaf);
      return leaf;
    });
    if (!this.fullAliasesShard && S > 1) this.reshard();
  }

  /** Copy `src` into the elements of `flat` from `offset`, shaped `shape` (the view is released at once: views keep storage alive). */
  copyAt(flat: T, offset: number, shape: number[], src: T): void {
    const view = this.sharding.view(flat, offset, shape);
    this.sharding.copy(view, src);
    this.free(view);
  }

  /** Release temporary handles now rather than when the garbage collector gets to them. */
  private free(...tensors: T[]): void {
    for (const t of tensors) if (t !== this.shard && t !== this.full && t !== this.gradShard && t !== this.gradFlat) this.backend.dispose?.(t);
  }

  private hasGrad(t: T): boolean {
    const g = this.sharding.grad(t);
    if (g === null) return false;
    this.free(g);
    return true;
  }

  private reduceByList(group: ProcessGroup<T>, out: T, flat: T): Work<unknown> {
    const parts = Array.from({ length: this.comm.shardSize }, (_, r) => this.backend.narrow(flat, 0, r * this.chunk, this.chunk));
    const work = group.reduceScatter(out, parts, 'sum');
    const done = () => this.free(...parts);
    return {
      wait: async () => {
        await work.wait();
        done();
      },
      isCompleted: () => work.isCompleted(),
      waitSync: () => {
        waitNow(work, 'reduce gradients');
        done();
      },
    };
  }

  private toDevice(t: T, device: string): T {
    return this.backend.device(t) === device ? t : this.backend.toDevice(t, device);
  }

  /** Whether the parameters are gathered (their views readable). */
  get unsharded(): boolean {
    return this.fullAliasesShard || this.sharding.hasStorage(this.full);
  }

  /** Whether the buffer is ever released (S > 1). */
  get shardsParameters(): boolean {
    return this.comm.shardSize > 1;
  }

  /**
   * Start gathering the parameters into `full` (no-op when gathered or
   * already under way). Collectives are issued in the same order on every
   * rank because every rank runs the same forward and backward.
   */
  startGather(): void {
    if (this.gathering || this.unsharded) return;
    const S = this.comm.shardSize;
    this.sharding.allocateStorage(this.full);
    if (S === 1) {
      // NO_SHARD with another compute dtype or device: the shard is the whole buffer.
      this.sharding.copy(this.full, this.shard);
      return;
    }
    let input: T | undefined;
    const src = this.backend.device(this.shard) === this.computeDevice ? this.shard : this.backend.toDevice(this.shard, this.computeDevice);
    input = this.dtypes.compute === 'float32' ? src : this.backend.cast!(src, this.dtypes.compute);
    const group = this.comm.shardGroup!;
    const work = group.allGatherInto
      ? group.allGatherInto(this.full, input)
      : this.gatherByList(group, input);
    this.gathering = { work, input: input === this.shard ? undefined : input };
  }

  private gatherByList(group: ProcessGroup<T>, input: T): Work<unknown> {
    const work = group.allGather(input);
    const full = this.full;
    const chunk = this.chunk;
    const sharding = this.sharding;
    const copyOut = (parts: unknown[]) => {
      parts.forEach((p, r) => {
        this.copyAt(full, r * chunk, [chunk], p as T);
        this.free(p as T);
      });
    };
    return {
      wait: async () => copyOut(await work.wait()),
      isCompleted: () => work.isCompleted(),
      waitSync: () => copyOut(waitNow(work, 'gather parameters')),
    };
  }

  /** Gather now (waiting for a gather already started). */
  unshard(): void {
    this.startGather();
    const g = this.gathering;
    if (!g) return;
    this.gathering = undefined;
    waitNow(g.work, `gather the parameters of unit "${this.name || '(root)'}"`);
    if (g.input !== undefined) this.backend.dispose?.(g.input);
  }

  /** Release the gathered parameters (their views stay, without memory). */
  reshard(): void {
    if (this.fullAliasesShard) return; // S = 1 in float32: the parameters are the shard itself
    if (this.gathering) this.unshard(); // never free memory a collective is writing into
    if (this.sharding.hasStorage(this.full)) this.sharding.freeStorage(this.full);
  }

  /**
   * Flatten the parameters' accumulated gradients (freeing them) and start
   * reducing them: reduce-scatter over the shard group (then, after
   * {@link finishReduce}, all-reduce over the replicas). Parameters without a
   * gradient contribute zeros.
   */
  startReduce(): void {
    if (this.pendingReduce || this.reduced) return;
    const S = this.comm.shardSize;
    const sharding = this.sharding;
    this.reduced = true;
    if (this.slots.every((s) => !s.requiresGrad)) return;
    let flat: T;
    if (this.gradFlat) {
      // Backward accumulated straight into the flat gradient buffer: nothing to copy.
      for (const s of this.slots) if (s.requiresGrad) sharding.setGrad(s.param, null);
      const acc = this.gradFlat;
      this.gradFlat = undefined;
      flat = this.dtypes.reduce === this.dtypes.compute ? acc : this.backend.cast!(acc, this.dtypes.reduce);
      if (flat !== acc) this.free(acc);
    } else {
      // Gradients the hooks did not lay out (a backward this strategy did not see start): copy them in.
      flat = this.backend.emptyTensor!([this.chunk * S], this.dtypes.reduce, this.computeDevice);
      sharding.zero(flat);
      for (const s of this.slots) {
        if (!s.requiresGrad) continue;
        const g = sharding.grad(s.param);
        if (g === null) continue;
        this.copyAt(flat, s.offset, s.shape, g);
        sharding.setGrad(s.param, null);
        this.free(g); // our handle: the gradient's memory goes with it
      }
    }
    if (S === 1) {
      this.pendingReduce = { work: DONE, out: flat, flat };
      return;
    }
    const out = this.backend.emptyTensor!([this.chunk], this.dtypes.reduce, this.computeDevice);
    const group = this.comm.shardGroup!;
    const work = group.reduceScatterInto
      ? group.reduceScatterInto(out, flat, 'sum')
      : this.reduceByList(group, out, flat);
    this.pendingReduce = { work, out, flat };
  }

  /**
   * Before this unit's backward: make each trainable parameter's `.grad` a
   * view into one zeroed flat buffer, so backward accumulates the gradients
   * already laid out for the reduce-scatter (no copy, no second buffer). Kept
   * across backwards without synchronisation (gradient accumulation), where
   * they keep adding up.
   */
  prepareGradients(): void {
    if (this.gradFlat) return;
    const sharding = this.sharding;
    const flat = this.backend.emptyTensor!([this.chunk * this.comm.shardSize], this.dtypes.compute, this.computeDevice);
    sharding.zero(flat);
    for (const s of this.slots) {
      if (!s.requiresGrad) continue;
      const g = sharding.grad(s.param);
      const view = sharding.view(flat, s.offset, s.shape);
      if (g !== null) {
        sharding.copy(view, g); // a gradient from before (e.g. accumulated outside the strategy) is kept
        this.free(g);
      }
      sharding.setGrad(s.param, view);
      this.free(view);
    }
    this.gradFlat = flat;
  }

  /**
   * Wait for the reduction started by {@link startReduce}, average it over
   * the world (all-reducing across replicas first) and add it to the leaves'
   * gradients — replacing them when the optimizer cleared them.
   */
  finishReduce(): void {
    const p = this.pendingReduce;
    if (!p) return;
    this.pendingReduce = undefined;
    waitNow(p.work, `reduce the gradients of unit "${this.name || '(root)'}"`);
    if (p.flat !== p.out) this.backend.dispose?.(p.flat);
    let reduced = p.out;
    if (this.comm.replicaGroup) waitNow(this.comm.replicaGroup.allReduce(reduced, 'sum' as ReduceOp), 'all-reduce gradients across replicas');
    reduced = this.backend.mulScalar(reduced, 1 / this.comm.worldSize);
    this.backend.dispose?.(p.out);
    const sharding = this.sharding;
    // Fresh gradients (the optimizer set them to None) replace; otherwise they add up, as `.grad` does.
    const fresh = this.slots.some((s, i) => s.requiresGrad && s.pieceNumel > 0 && !this.hasGrad(this.leaves[i]));
    const shardGrad = this.toDevice(reduced, this.shardDevice);
    if (fresh) sharding.copy(this.gradShard, shardGrad);
    else sharding.addInPlace(this.gradShard, shardGrad);
    this.backend.dispose?.(reduced);
    if (shardGrad !== reduced) this.backend.dispose?.(shardGrad);
    const lo = this.comm.shardRank * this.chunk;
    this.slots.forEach((s, i) => {
      if (!s.requiresGrad || s.pieceNumel === 0) return;
      const leaf = this.leaves[i];
      if (!this.hasGrad(leaf)) {
        const view = sharding.view(this.gradShard, s.offset + s.pieceOffset - lo, [s.pieceNumel]);
        sharding.setGrad(leaf, view);
        this.free(view);
      }
    });
  }

  /** The unit's float32 master values (all `chunk * S` elements), gathered from every shard: a collective over the shard group. The shard itself when S = 1. */
  gatherFullFloat32(): T {
    const S = this.comm.shardSize;
    if (S === 1) return this.shard;
    const out = this.backend.emptyTensor!([this.chunk * S], 'float32', this.shardDevice);
    const group = this.comm.shardGroup!;
    if (group.allGatherInto) waitNow(group.allGatherInto(out, this.shard), 'gather a full state dict');
    else {
      const parts = waitNow(group.allGather(this.shard), 'gather a full state dict');
      parts.forEach((part, r) => {
        this.copyAt(out, r * this.chunk, [this.chunk], part as T);
        this.free(part as T);
      });
    }
    return out;
  }

  /** Write a full float32 flat buffer's values into this rank's shard (and the gathered buffer when it aliases). */
  loadFullFloat32(flat: T): void {
    const S = this.comm.shardSize;
    const src = S === 1 ? flat : this.backend.narrow(flat, 0, this.comm.shardRank * this.chunk, this.chunk);
    this.sharding.copy(this.shard, src);
    if (src !== flat) this.free(src);
    if (!this.fullAliasesShard && this.unsharded) this.sharding.copy(this.full, S === 1 ? this.shard : flat);
  }

  /** Keep a hook to remove on teardown. */
  own(h: HookHandle): void {
    this.hooks.push(h);
  }

  /** Remove the unit's forward and gradient-ready hooks (the parameters stay views of the flat buffer). */
  teardown(): void {
    for (const h of this.hooks.splice(0)) h.remove();
  }
}

const DONE: Work<unknown> = { wait: async () => undefined, isCompleted: () => true, waitSync: () => undefined };
