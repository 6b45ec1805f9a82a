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
  /**
   * The model's weights as host tensors in the layout checkpoints use (PyTorch's
   * names and axis order), for backends whose native layout differs — a tfjs
   * `Dense` kernel is `[in, out]` where torch's `Linear.weight` is `[out, in]`.
   * When present, `Accelerator.getStateDict` (so `saveModel` and `saveState`)
   * writes this instead of `stateDict`; `loadStateDict` must accept it back.
   */
  checkpointStateDict?(model: M): Record<string, HostTensor>;
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
  /**
   * The optimizer's state for a checkpoint (PyTorch's `optimizer.state_dict()`
   * layout where the backend has one): plain objects, arrays, numbers,
   * strings, booleans and {@link HostTensor} leaves (copies, not views of
   * live buffers). Without it `saveState` uses the optimizer's own
   * `stateDict()`, converting backend tensors with `toHost`.
   */
  optimizerStateDict?(optimizer: O): unknown | Promise<unknown>;
  /** Restore {@link Backend.optimizerStateDict}'s output (HostTensor leaves) into `optimizer`, on its parameters' devices. */
  loadOptimizerStateDict?(optimizer: O, state: unknown): void | Promise<void>;
  /** The scheduler's state for a checkpoint (JSON-able). Without it `saveState` uses the scheduler's own `stateDict()`. */
  schedulerStateDict?(scheduler: S): unknown;
  /** Restore {@link Backend.schedulerStateDict}'s output into `scheduler` (and the learning rates it set). */
  loadSchedulerStateDict?(scheduler: S, state: unknown): void;
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

  // ---- big modeling (optional; used by @accelerate/big-modeling) ---------
  // The module tree, tensor replacement and forward hooks that device maps,
  // offloading and empty-weight initialisation need. A backend without them
  // can still train; big-modeling names the missing method when it needs one.

  /** Direct submodules of `model`, by attribute name, in registration order. */
  namedChildren?(model: M): Array<[string, M]>;
  /** Class name of a module (`Linear`, `DecoderLayer`): what `noSplitModuleClasses` matches. */
  moduleClassName?(model: M): string;
  /**
   * The module's own parameters and buffers (not its children's), as the very
   * objects the module holds, so that tied parameters are found by identity.
   * `persistent: false` marks buffers kept out of the state dict.
   */
  ownTensors?(model: M): { parameters: Array<[string, T]>; buffers: Array<{ name: string; tensor: T; persistent: boolean }> };
  /**
   * Make the module's own parameter or buffer `name` hold `value` (which may be
   * on another device, `meta` included), keeping it a parameter with the same
   * `requiresGrad`. Used to bring offloaded weights in and send them back.
   * `disposeOld` frees the tensor it held at once (the caller knows nothing
   * else uses it); otherwise it is left to the garbage collector.
   */
  setModuleTensor?(module: M, name: string, value: T, options?: { disposeOld?: boolean }): void;
  /**
   * Call `pre` before every forward of `module` (it may return replacement
   * arguments) and `post` after (it may return a replacement output).
   */
  addForwardHooks?(
    module: M,
    hooks: { pre?: (args: unknown[]) => unknown[] | void; post?: (args: unknown[], output: unknown) => unknown },
  ): { remove(): void };
  /**
   * Run `fn` so that every parameter (and buffer, with `includeBuffers`) it
   * creates is created on `device` instead; `meta` allocates no memory.
   */
  initOnDevice?<R>(device: string, fn: () => R, options?: { includeBuffers?: boolean }): R;
  /** A new tensor of `shape` and `dtype` on `device` (default cpu), contents unspecified; `meta` gives a placeholder without memory. */
  emptyTensor?(shape: number[], dtype: DType, device?: string): T;
  /**
   * The bytes of a contiguous cpu tensor, without copying (writes change the
   * tensor), so files are read straight into tensors and written from them;
   * `undefined` when the backend cannot share its memory.
   */
  hostBytes?(t: T): Uint8Array | undefined;
  /** `t` converted to `dtype` (a new tensor; `t` itself when it already has it). */
  cast?(t: T, dtype: DType): T;
  /**
   * Map a file into memory copy-on-write (nothing is read until the pages are
   * used, and they are shared with the page cache) and cut cpu tensors out of
   * it, as safetensors' mmap loading does. Tensors keep the mapping alive
   * after `close()`; a tensor the backend cannot view (misaligned offset)
   * throws, and callers fall back to reading.
   */
  mapFile?(path: string): { tensor(byteOffset: number, shape: number[], dtype: DType): T; close(): void };
}

/**
 * What `registerBackend` takes: something that can produce a {@link Backend}.
 * `init` is called at most once (memoised); a failure is remembered with its
 * reason and reported in the aggregated "no available backend" error.
 */
export interface BackendFactory {
  init(): Promise<Backend<any, any, any, any>>;
}
