/**
 * The compute backend contract. Backend packages (libtorch, tfjs, third-party)
 * implement it; core drives it and never imports a concrete backend.
 *
 * Type parameters: `T` tensor, `M` model, `O` optimizer, `S` scheduler.
 * Keep implementations thin: generic logic (sharding, accumulation rules,
 * collectives on nested structures, checkpoint layout) lives in core.
 * @module
 */
import type { DType, HostTensor } from '../tensor/host-tensor.js';
import type { ProcessGroup, ProcessGroupOptions } from './process-group.js';

/** Precision modes, as Accelerate names them. */
export type MixedPrecision = 'no' | 'fp16' | 'bf16' | 'fp8';

/** One compute device the backend can use. */
export interface DeviceInfo {
  /** PyTorch-style name: `cpu`, `cuda:0`, `mps`, `wasm`, … */
  name: string;
  /** Device kind (`cpu`, `cuda`, …): decides the distributed type (MULTI_CPU, MULTI_GPU, …). */
  kind: string;
  /** Total memory in bytes, when known. */
  totalMemory?: number;
  /** Free memory in bytes, when known. */
  freeMemory?: number;
}

/** Memory use of one device, in bytes. */
export interface MemoryInfo {
  allocated: number;
  reserved?: number;
  total?: number;
}

/** Loss-scaling state for fp16 (GradScalerKwargs). */
export interface GradScalerOptions {
  initScale: number;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  enabled: boolean;
}

/** A dynamic loss scaler as in `torch.amp.GradScaler`. */
export interface GradScaler<T = unknown, O = unknown> {
  /** Multiply the loss by the current scale. */
  scale(loss: T): T;
  /** Divide the optimizer's gradients by the scale (once per step). */
  unscale(optimizer: O): void;
  /** Step the optimizer unless gradients hold inf/NaN; returns whether it stepped. */
  step(optimizer: O): boolean;
  /** Grow or back off the scale after a step. */
  update(): void;
  /** Current scale. */
  getScale(): number;
  stateDict(): Record<string, number>;
  loadStateDict(state: Record<string, number>): void;
}

/** A loss as a tensor, or as a closure (backends such as tfjs compute gradients from a function). */
export type Loss<T> = T | (() => T);

/**
 * What a backend must provide. Optional members are capabilities: core checks
 * for them and explains what is missing when a feature needs one.
 */
export interface Backend<T = unknown, M = unknown, O = unknown, S = unknown> {
  /** Registry name, e.g. `libtorch`, `tfjs`. */
  readonly name: string;
  /**
   * True when tensors cannot be modified in place or handed to the process
   * group directly (tfjs): collectives then go through host buffers.
   */
  readonly hostTransport?: boolean;
  /** Backend and engine version, shown by `accelerate env`. */
  readonly version: string;

  // ---- devices -----------------------------------------------------------
  /** Devices this process can use, cpu last. */
  devices(): DeviceInfo[];

  // ---- tensors -----------------------------------------------------------
  isTensor(x: unknown): x is T;
  shape(t: T): number[];
  dtype(t: T): DType;
  /** Device name of `t`. */
  device(t: T): string;
  /** Copy (or move) `t` to `device`; returns `t` itself when already there. */
  toDevice(t: T, device: string, options?: { nonBlocking?: boolean }): T;
  /** Make a backend tensor from host data on `device`. */
  fromHost(h: HostTensor, device?: string): T;
  /** Copy a backend tensor to host memory. */
  toHost(t: T): HostTensor;
  /** Concatenate along `dim`. */
  cat(tensors: T[], dim: number): T;
  /** `length` entries of `dim` starting at `start` (a view where possible). */
  narrow(t: T, dim: number, start: number, length: number): T;
  /** A new tensor of `shape` filled with `value`, with `like`'s dtype and device. */
  fullLike(like: T, shape: number[], value: number): T;
  /** Elementwise multiply by a scalar (new tensor). */
  mulScalar(t: T, value: number): T;
  /** Free the tensor's memory now (no-op for garbage-collected backends). */
  dispose?(t: T): void;

  // ---- models --------------------------------------------------------------
  isModel(x: unknown): x is M;
  /** Parameters by stable, dotted name (`layer1.weight`). */
  namedParameters(model: M): Array<[string, T]>;
  /** Parameters and buffers by name. */
  stateDict(model: M): Record<string, T>;
  loadStateDict(model: M, state: Record<string, T | HostTensor>, options?: { strict?: boolean }): void;
  /** Move (and optionally cast) a model in place. */
  moveModel(model: M, device: string, dtype?: DType): void;
  setTrainingMode(model: M, training: boolean): void;
  /**
   * Run `forward` of `model` inside autocast for `precision` and return fp32
   * outputs. Returns the same model object (patched) so user types keep working.
   */
  wrapForwardForPrecision?(model: M, precision: MixedPrecision): M;
  /** Wrap for data parallelism over `group` (broadcast params, gradient all-reduce); may resolve later. */
  wrapDistributed?(model: M, group: ProcessGroup<T>, options: Record<string, unknown>): M | Promise<M>;
  /**
   * Undo the wrappers core or the backend added (data parallelism). The
   * mixed-precision forward patch stays unless `keepFp32Wrapper` is false,
   * as in Accelerate's `unwrap_model`.
   */
  unwrapModel?(model: M, options?: { keepFp32Wrapper?: boolean }): M;
  /**
   * Turn gradient synchronisation of a distributed model on or off (DDP's
   * `no_sync`): while off, backward only accumulates locally.
   */
  setGradientSync?(model: M, enabled: boolean): void;
  /** Force the next backward of a data-parallel model to synchronise, even with sync off. */
  triggerSyncInBackward?(model: M): void;
  /**
   * Run `fn` on uneven inputs (torch's `Join` with DDP's join hook), for
   * `Accelerator.joinUnevenInputs`: once this rank's `fn` returned, keep matching
   * the collectives the other ranks' forwards and backwards of `models` issue
   * (with zero gradients) until every rank's `fn` returned, then make the models
   * equal on all ranks. `divideByInitialWorldSize` false divides gradients by the
   * number of ranks still active instead of the world size. Absent: the
   * Accelerator warns and runs `fn` without joining.
   */
  joinUnevenInputs?<R>(models: M[], fn: () => R | Promise<R>, options: { divideByInitialWorldSize: boolean }): Promise<R>;

  // ---- autograd and optimisation -----------------------------------------
  /**
   * Backpropagate `loss * scale` into the parameters' gradients (accumulating).
   * May return a promise when gradients become usable later (e.g. an
   * asynchronous cross-process reduction); the Accelerator hands it back.
   */
  backward(loss: Loss<T>, options: { scale: number; model?: M }): void | Promise<void>;
  /** Gradient of a parameter, or null. */
  grad(param: T): T | null;
  /** Clip the global gradient norm of `params` in place; returns the total norm before clipping. */
  clipGradNorm(params: T[], maxNorm: number, normType?: number): number;
  /** Clamp every gradient element into `[-clipValue, clipValue]`. */
  clipGradValue?(params: T[], clipValue: number): void;
  isOptimizer(x: unknown): x is O;
  optimizerStep(optimizer: O): void;
  optimizerZeroGrad(optimizer: O, setToNone: boolean): void;
  /** Parameters the optimizer updates. */
  optimizerParams(optimizer: O): T[];
  isScheduler?(x: unknown): x is S;
  /** The optimizer a scheduler drives. */
  schedulerOptimizer?(scheduler: S): O;
  schedulerStep?(scheduler: S): void;
  /** Move optimizer state to `device`. */
  moveOptimizerState?(optimizer: O, device: string): void;
  /** Run `fn` with autocast for `precision` enabled (or explicitly disabled with `enabled: false`). */
  autocast?<R>(precision: MixedPrecision, fn: () => R, options?: { enabled?: boolean }): R;
  createGradScaler?(options: GradScalerOptions): GradScaler<T, O>;

  // ---- randomness, memory, communication ---------------------------------
  /** Seed every generator the backend owns. */
  manualSeed(seed: number): void;
  /** Opaque RNG state of the backend's default generator(s). */
  getRngState(): Uint8Array;
  setRngState(state: Uint8Array): void;
  memoryInfo?(device: string): MemoryInfo;
  /** True when `error` means "out of memory" (used by findExecutableBatchSize). */
  isOutOfMemoryError(error: unknown): boolean;
  /** Release cached allocator memory. */
  emptyCache?(): void;
  /** Join (or create) the process group for this run. Absent = cannot run multi-process. */
  initProcessGroup?(options: ProcessGroupOptions): Promise<ProcessGroup<T>>;
}

/**
 * What `registerBackend` takes: something that can produce a {@link Backend}.
 * `init` is called at most once (memoised); a failure is remembered with its
 * reason and reported in the aggregated "no available backend" error.
 */
export interface BackendFactory {
  init(): Promise<Backend<any, any, any, any>>;
}
