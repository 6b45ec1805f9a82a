/**
 * Communication between processes, separate from the compute backend.
 * backend-libtorch implements it over c10d (gloo on CPU, NCCL on CUDA);
 * other backends may borrow that implementation for host buffers.
 * @module
 */
import type { HostArray } from '../tensor/host-tensor.js';

/** Reduction applied by {@link ProcessGroup.allReduce} and {@link ProcessGroup.reduceScatter}. */
export type ReduceOp = 'sum' | 'avg' | 'max' | 'min' | 'product';

/**
 * A collective in flight. Collectives are *issued* synchronously, in the same
 * order on every rank, and *awaited* later; `wait()` must not block the event
 * loop, so several collectives can overlap with other work.
 */
export interface Work<R = void> {
  /** Resolves with the collective's result once it completed on this rank; rejects with a diagnosis on timeout or peer failure. */
  wait(): Promise<R>;
  /** True once `wait()` would resolve immediately. */
  isCompleted(): boolean;
  /**
   * Block the calling thread until the collective completed and return its
   * result; throws what `wait()` would reject with. For code that must have
   * the result before it returns and cannot await, such as a hook running
   * inside backward. Absent: only `wait()`.
   */
  waitSync?(): R;
}

/** A key/value rendezvous store shared by the ranks (c10d TCPStore or similar). */
export interface KeyValueStore {
  set(key: string, value: Uint8Array | string): Promise<void>;
  /** Waits until `key` exists (bounded by the group's timeout). */
  get(key: string): Promise<Uint8Array>;
  /** Atomically adds `delta` and returns the new value. */
  add(key: string, delta: number): Promise<number>;
}

/**
 * A group of ranks that can run collectives. `T` is the backend's tensor type;
 * every collective also accepts plain typed arrays (host buffers).
 * In-place collectives overwrite their input on every rank.
 */
export interface ProcessGroup<T = never> {
  /** This process's rank inside the group. */
  readonly rank: number;
  /** Number of ranks in the group. */
  readonly size: number;
  /** Transport name, e.g. `gloo`, `nccl`, `mpi`. */
  readonly backend: string;
  /** The rendezvous store, when the group has one (used for hang diagnosis). */
  readonly store?: KeyValueStore;

  /** In-place reduction of `data` across ranks. */
  allReduce(data: T | HostArray, op?: ReduceOp): Work;
  /** In-place: every rank ends with `src`'s values. */
  broadcast(data: T | HostArray, src: number): Work;
  /** Every rank's `data` (same shape on all ranks), in rank order. */
  allGather(data: T | HostArray): Work<Array<T | HostArray>>;
  /** Reduce `inputs[r]` across ranks into rank r's `output` (in place). */
  reduceScatter(output: T | HostArray, inputs: Array<T | HostArray>, op?: ReduceOp): Work;
  /**
   * Gather every rank's `input` into `output` (contiguous, `size` times as
   * many elements, rank r's at `[r * n, (r + 1) * n)`), in place, without a
   * result list: what sharded strategies gather parameters with
   * (`all_gather_into_tensor`). Absent: use {@link allGather}.
   */
  allGatherInto?(output: T, input: T): Work;
  /**
   * Reduce `input` (contiguous, `size` times as many elements as `output`)
   * across ranks and leave elements `[r * n, (r + 1) * n)` of the result in
   * rank r's `output`, in place (`reduce_scatter_tensor`). Absent: use
   * {@link reduceScatter}.
   */
  reduceScatterInto?(output: T, input: T, op?: ReduceOp): Work;
  /**
   * How this group implements each collective whose implementation varies
   * with the transport's version: `native` (one call of the transport) or the
   * emulation used (e.g. `alltoall+sum` for reduce-scatter on libtorch 1.13's
   * gloo). Shown in logs and benchmarks.
   */
  readonly implementations?: Readonly<Record<string, string>>;
  /** Point-to-point send of `data` to `dst`. */
  send(data: T | HostArray, dst: number, tag?: number): Work;
  /** Point-to-point receive into `data` from `src`. */
  recv(data: T | HostArray, src: number, tag?: number): Work;
  /** Resolves once every rank reached the barrier. */
  barrier(): Work;
  /**
   * A subgroup of `ranks` (global ranks of this group). Must be called by
   * every rank of this group, in the same order; non-members get `null`.
   */
  newGroup(ranks: readonly number[]): Promise<ProcessGroup<T> | null>;
  /** Release the transport. The group is unusable afterwards. */
  destroy(): Promise<void>;
}

/** How a backend is asked to join a process group. Values come from {@link PartialState}'s env detection. */
export interface ProcessGroupOptions {
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  /** Transport to use; `undefined` lets the backend pick (gloo on CPU, nccl on CUDA). */
  backend?: string;
  /** Collective timeout in milliseconds (InitProcessGroupKwargs.timeout). */
  timeoutMs: number;
}
