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
  /** Bytes held by live tensors (the allocator's count where the backend has one). */
  allocated: number;
  /** Highest `allocated` since the process started or {@link MemoryCapability.resetPeak}. */
  peakAllocated?: number;
  /** A limit the backend enforces on `allocated` (allocations past it fail with an out-of-memory error), when one is set. */
  limit?: number;
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
 * The root every backend provides: identity, devices and the tensor
 * operations core's generic code (data loading, collectives on nested
 * structures, checkpoints) needs. Everything else is a capability: an
 * optional handler object ({@link BackendCapabilities}) that a feature asks
 * for by name with {@link requireCapability}, so a backend that lacks one gets
 * a single error naming the capability, the backend and the feature.
 *
 * Type parameters: `T` tensor, `M` model, `O` optimizer, `S` scheduler.
 */
export interface BackendRoot<T = unknown> {
  /** Registry name, e.g. `libtorch`, `tfjs`. */
  readonly name: string;
  /** Backend and engine version, shown by `accelerate env`. */
  readonly version: string;
  /**
   * True when tensors cannot be modified in place or handed to the process
   * group directly (tfjs): collectives then go through host buffers.
   */
  readonly hostTransport?: boolean;

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
  /** `t` converted to `dtype` (a new tensor; `t` itself when it already has it). */
  cast?(t: T, dtype: DType): T;
  /** A new tensor of `shape` and `dtype` on `device` (default cpu), contents unspecified; `meta` gives a placeholder without memory. */
  emptyTensor?(shape: number[], dtype: DType, device?: string): T;
  /**
   * The bytes of a contiguous cpu tensor, without copying (writes change the
   * tensor), so files are read straight into tensors and written from them;
   * `undefined` when the backend cannot share its memory.
   */
  hostBytes?(t: T): Uint8Array | undefined;
  /**
   * Map a file into memory copy-on-write (nothing is read until the pages are
   * used, and they are shared with the page cache) and cut cpu tensors out of
   * it, as safetensors' mmap loading does. Tensors keep the mapping alive
   * after `close()`; a tensor the backend cannot view (misaligned offset)
   * throws, and callers fall back to reading.
   */
  mapFile?(path: string): { tensor(byteOffset: number, shape: number[], dtype: DType): T; close(): void };
}

/** Removes a hook it was returned for. */
export interface HookHandle {
  remove(): void;
}

/** Models: parameters, state dicts, placement, and the module tree and hooks big-modeling and strategies use. */
export interface ModelCapability<T = unknown, M = unknown> {
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

  // The module tree, tensor replacement and hooks that device maps,
  // offloading, empty-weight initialisation and sharding strategies need.
  // A backend without them can still train; the feature that needs one names it.

  /** Direct submodules of `model`, by attribute name, in registration order. */
  namedChildren?(model: M): Array<[string, M]>;
  /** Class name of a module (`Linear`, `DecoderLayer`): what `noSplitModuleClasses` and auto-wrap policies match. */
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
  ): HookHandle;
  /**
   * Call `fn(param)` during backward right after `param`'s gradient has been
   * accumulated into its `.grad` (torch's post-accumulate-grad hook), once per
   * backward: what a sharding strategy's reduce-scatter hangs on.
   */
  addGradientReadyHook?(param: T, fn: (param: T) => void): HookHandle;
  /**
   * Run `fn` so that every parameter (and buffer, with `includeBuffers`) it
   * creates is created on `device` instead; `meta` allocates no memory.
   */
  initOnDevice?<R>(device: string, fn: () => R, options?: { includeBuffers?: boolean }): R;
}

/** Autograd: backward, gradients and local gradient clipping. */
export interface AutogradCapability<T = unknown, M = unknown> {
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
}

/** Optimizers and learning-rate schedulers. */
export interface OptimizerCapability<T = unknown, O = unknown, S = unknown> {
  isOptimizer(x: unknown): x is O;
  step(optimizer: O): void;
  zeroGrad(optimizer: O, setToNone: boolean): void;
  /** Parameters the optimizer updates. */
  params(optimizer: O): T[];
  /** Move optimizer state to `device`. */
  moveState?(optimizer: O, device: string): void;
  /**
   * Make `optimizer` update other tensors in place of its parameters:
   * `replace(param)` gives each parameter's stand-in (a leaf that requires
   * grad), kept in the same parameter group with the same hyperparameters, in
   * the same order. What a sharded strategy uses to point an optimizer built
   * over a model's parameters at this rank's shards. Allowed only while the
   * optimizer has no state (before its first step).
   */
  replaceParams?(optimizer: O, replace: (param: T) => T): void;
  /**
   * The optimizer's state for a checkpoint (PyTorch's `optimizer.state_dict()`
   * layout where the backend has one): plain objects, arrays, numbers,
   * strings, booleans and {@link HostTensor} leaves (copies, not views of
   * live buffers). Without it `saveState` uses the optimizer's own
   * `stateDict()`, converting backend tensors with `toHost`.
   */
  stateDict?(optimizer: O): unknown | Promise<unknown>;
  /** Restore {@link OptimizerCapability.stateDict}'s output (HostTensor leaves) into `optimizer`, on its parameters' devices. */
  loadStateDict?(optimizer: O, state: unknown): void | Promise<void>;
  isScheduler?(x: unknown): x is S;
  /** The optimizer a scheduler drives. */
  schedulerOptimizer?(scheduler: S): O;
  schedulerStep?(scheduler: S): void;
  /** The scheduler's state for a checkpoint (JSON-able). Without it `saveState` uses the scheduler's own `stateDict()`. */
  schedulerStateDict?(scheduler: S): unknown;
  /** Restore {@link OptimizerCapability.schedulerStateDict}'s output into `scheduler` (and the learning rates it set). */
  loadSchedulerStateDict?(scheduler: S, state: unknown): void;
}

/** Mixed precision: autocast and fp16 loss scaling. */
export interface PrecisionCapability<T = unknown, M = unknown, O = unknown> {
  /**
   * Run `forward` of `model` inside autocast for `precision` and return fp32
   * outputs. Returns the same model object (patched) so user types keep working.
   */
  wrapForwardForPrecision?(model: M, precision: MixedPrecision): M;
  /** Undo {@link wrapForwardForPrecision} (Accelerate's `unwrap_model(keep_fp32_wrapper=False)`). */
  unwrapForwardForPrecision?(model: M): M;
  /** Run `fn` with autocast for `precision` enabled (or explicitly disabled with `enabled: false`). */
  autocast?<R>(precision: MixedPrecision, fn: () => R, options?: { enabled?: boolean }): R;
  createGradScaler?(options: GradScalerOptions): GradScaler<T, O>;
}

/** Random number generators the backend owns. */
export interface RngCapability {
  /** Seed every generator the backend owns. */
  manualSeed(seed: number): void;
  /** Opaque RNG state of the backend's default generator(s). */
  getState(): Uint8Array;
  setState(state: Uint8Array): void;
}

/** Device memory. */
export interface MemoryCapability {
  info?(device: string): MemoryInfo;
  /** True when `error` means "out of memory" (used by findExecutableBatchSize). */
  isOutOfMemoryError(error: unknown): boolean;
  /** Release cached allocator memory. */
  emptyCache?(): void;
  /** Start {@link MemoryInfo.peakAllocated} again from the current allocation. */
  resetPeak?(device: string): void;
  /**
   * Make allocations on `device` fail with an out-of-memory error once
   * `allocated` would pass `bytes` (undefined removes the limit): a memory
   * budget, e.g. to show that a model too large for one process trains sharded.
   */
  setLimit?(device: string, bytes: number | undefined): void;
}

/** Joining a process group (c10d gloo / NCCL, or a backend's own). Absent = cannot run multi-process. */
export interface CommunicationCapability<T = unknown> {
  initProcessGroup(options: ProcessGroupOptions): Promise<ProcessGroup<T>>;
}

/**
 * How a model is wrapped for data parallelism: Accelerate's
 * `DistributedDataParallelKwargs` fields, in camelCase (the one definition;
 * `DistributedDataParallelKwargs` fills PyTorch's defaults, a backend's
 * `dataParallel.wrap` takes any subset and fills its own for the rest).
 */
export interface DistributedDataParallelOptions {
  /** Batch dimension for scattering inputs over devices. One device per process here, so unused. */
  dim: number;
  /** Broadcast rank 0's buffers (e.g. batch-norm statistics) before every forward that will sync (default true). */
  broadcastBuffers: boolean;
  /** Gradient bucket size in MiB (default 25). The first bucket is capped at 1 MiB so communication starts early. */
  bucketCapMb: number;
  /**
   * Allow parameters that get no gradient in a backward (default false): they
   * contribute zeros, and keep no gradient if no rank used them. Without it such
   * parameters make backward throw, naming them.
   */
  findUnusedParameters: boolean;
  /** Deprecated in PyTorch too; accepted and ignored. */
  checkReduction: boolean;
  /**
   * Make each `param.grad` a view into its flat communication bucket (PyTorch's
   * `gradient_as_bucket_view`): backward accumulates into the buckets and the
   * all-reduce averages them in place, so nothing is copied back and no bucket is
   * allocated per step. `DistributedDataParallelKwargs` defaults to false, as
   * PyTorch; backend-libtorch's own default (no options given) is true. Either way
   * `param.grad` holds the average after backward; with views, do not keep a
   * gradient tensor across steps expecting it to stay unchanged.
   */
  gradientAsBucketView: boolean;
  /** Accepted; buckets do not depend on the graph in backend-libtorch. */
  staticGraph: boolean;
  /**
   * Gradient compression on the wire: `fp16` (or `bf16`, libtorch 2.x only) halves
   * the bytes sent; `no` sends float32. On CPU ranks this is slower, not faster: gloo
   * sums half precision element by element (~4x slower steps measured on loopback);
   * it pays off only where the network, not the CPU, is the limit. PowerSGD hooks
   * are not implemented by backend-libtorch.
   */
  commHook: 'no' | 'fp16' | 'bf16' | 'power_sgd' | 'batched_power_sgd';
}

/**
 * The backend's own data-parallel engine (DDP's reducer: bucketed gradient
 * all-reduce overlapped with backward). Core's built-in DDP strategy
 * delegates to it; other strategies use {@link ModelCapability} hooks and the
 * process group instead.
 */
export interface DataParallelCapability<T = unknown, M = unknown> {
  /** Wrap for data parallelism over `group` (broadcast params, gradient all-reduce); may resolve later. */
  wrap(model: M, group: ProcessGroup<T>, options: Readonly<Partial<DistributedDataParallelOptions>>): M | Promise<M>;
  /** The model {@link wrap} was given (the same object when it wraps in place). */
  unwrap(model: M): M;
  /**
   * Turn gradient synchronisation of a wrapped model on or off (DDP's
   * `no_sync`): while off, backward only accumulates locally.
   */
  setGradientSync(model: M, enabled: boolean): void;
  /** Force the next backward of a wrapped model to synchronise, even with sync off. */
  triggerSyncInBackward?(model: M): void;
  /**
   * Run `fn` on uneven inputs (torch's `Join` with DDP's join hook), for
   * `Accelerator.joinUnevenInputs`: once this rank's `fn` returned, keep matching
   * the collectives the other ranks' forwards and backwards of `models` issue
   * (with zero gradients) until every rank's `fn` returned, then make the models
   * equal on all ranks. `divideByInitialWorldSize` false divides gradients by the
   * number of ranks still active instead of the world size.
   */
  joinUnevenInputs?<R>(models: M[], fn: () => R | Promise<R>, options: { divideByInitialWorldSize: boolean }): Promise<R>;
}

/**
 * What a sharding strategy (FSDP, ZeRO) needs from the backend beyond models
 * and autograd: flat 1-D buffers whose memory can be released and given back
 * while views into them stay valid (so autograd's saved views of a freed
 * parameter work again once it is re-gathered), parameters re-pointed at such
 * views, leaf views the optimizer steps, and hooks into backward.
 *
 * All operations run without recording autograd. Backends whose tensors
 * cannot share memory (tfjs) do not provide it, and FSDP says so by name.
 */
export interface ShardingCapability<T = unknown, M = unknown> {
  /** Number of elements of `t`. */
  numel(t: T): number;
  /** Whether `t` records gradients (`requires_grad`). */
  requiresGrad(t: T): boolean;
  /** A view of the contiguous 1-D `flat` holding `prod(shape)` elements from `offset`, shaped `shape`. */
  view(flat: T, offset: number, shape: number[]): T;
  /** A new contiguous 1-D copy of `t`'s elements (row-major). */
  flatten(t: T): T;
  /** Copy `src`'s elements into `dst` (same number of elements; shapes may differ; dtypes are converted). */
  copy(dst: T, src: T): void;
  /** `dst += src` elementwise, in place. */
  addInPlace(dst: T, src: T): void;
  /** Fill `t` with zeros in place. */
  zero(t: T): void;
  /**
   * Release the memory of `flat`'s storage. `flat` and every view of it stay
   * valid objects (autograd may hold them) but must not be read or written
   * until {@link allocateStorage} gave the memory back.
   */
  freeStorage(flat: T): void;
  /** Give `flat`'s storage memory for all its elements again (contents unspecified); views of it see the new memory. */
  allocateStorage(flat: T): void;
  /** False between {@link freeStorage} and {@link allocateStorage}. */
  hasStorage(flat: T): boolean;
  /**
   * Make the parameter `param` use `data`'s memory, shape and dtype, keeping
   * the parameter object, its `requiresGrad` and its autograd identity
   * (torch's `param.data = data`). Gradient-ready hooks stay registered.
   */
  setData(param: T, data: T): void;
  /** The gradient of a leaf tensor, or null. */
  grad(param: T): T | null;
  /** Set (or clear, with null) the gradient of a leaf tensor; `grad` must match its shape and dtype. */
  setGrad(param: T, grad: T | null): void;
  /** A new leaf tensor sharing `t`'s memory (writes through it change `t`), with `requiresGrad` set: what an optimizer steps in place of a shard. */
  leafView(t: T, requiresGrad: boolean): T;
  /**
   * Call `fn` during backward once the gradient with respect to the non-leaf
   * tensor `t` has been computed, before the operations that produced `t` run
   * their backward: where a sharding strategy gathers a unit's parameters
   * again. Returns undefined (and registers nothing) when `t` does not require grad.
   */
  addTensorGradHook(t: T, fn: () => void): HookHandle | undefined;
  /**
   * Only while a backward is running (from a hook): run `fn` once when that
   * backward pass has finished, before `backward()` returns (torch's
   * `Variable._execution_engine.queue_callback`). A throw from `fn` makes
   * backward throw.
   */
  queueBackwardCallback(fn: () => void): void;
  /** Whether operations currently record gradients (`torch.is_grad_enabled()`). */
  isGradEnabled(): boolean;
  /**
   * Activation checkpointing: make `module`'s forward keep no intermediate
   * activations when it records gradients, and recompute them (re-running the
   * forward, with its forward hooks) during backward, as
   * `torch.utils.checkpoint` does. Returns a handle that restores the
   * ordinary forward. Absent: the backend cannot checkpoint.
   */
  checkpointModule?(module: M): HookHandle;
}

/** The optional handlers a backend may provide, by capability name. */
export interface BackendCapabilities<T = unknown, M = unknown, O = unknown, S = unknown> {
  readonly models?: ModelCapability<T, M>;
  readonly autograd?: AutogradCapability<T, M>;
  readonly optimizers?: OptimizerCapability<T, O, S>;
  readonly precision?: PrecisionCapability<T, M, O>;
  readonly rng?: RngCapability;
  readonly memory?: MemoryCapability;
  readonly communication?: CommunicationCapability<T>;
  readonly dataParallel?: DataParallelCapability<T, M>;
  readonly sharding?: ShardingCapability<T, M>;
}

/** Name of a {@link BackendCapabilities} handler. */
export type BackendCapabilityName = keyof BackendCapabilities;

/**
 * What a backend package implements: the {@link BackendRoot} and whichever
 * {@link BackendCapabilities} it has. Training needs `models`, `autograd`,
 * `optimizers` and `rng`; multi-process runs need `communication`; the
 * built-in DDP strategy needs `dataParallel`.
 */
export interface Backend<T = unknown, M = unknown, O = unknown, S = unknown> extends BackendRoot<T>, BackendCapabilities<T, M, O, S> {}

/** What each capability is for, for error messages. */
const CAPABILITY_HELP: Record<BackendCapabilityName, string> = {
  models: 'models (parameters, state dicts, placement)',
  autograd: 'autograd (backward, gradients, clipping)',
  optimizers: 'optimizers and schedulers',
  precision: 'mixed precision (autocast, loss scaling)',
  rng: 'random generators (seeding, RNG state in checkpoints)',
  memory: 'device memory queries',
  communication: 'process groups (multi-process runs)',
  dataParallel: 'a native data-parallel engine (the built-in DDP strategy)',
  sharding: 'flat parameter buffers and backward hooks (sharded strategies: FSDP, ZeRO)',
};

/**
 * The backend's `name` capability handler, or one error that names the
 * capability, the backend and the feature that needs it.
 * @param feature - what needs it, e.g. `"Accelerator.prepare(model)"`.
 */
export function requireCapability<B extends Backend<any, any, any, any>, K extends BackendCapabilityName>(
  backend: B,
  name: K,
  feature: string,
): NonNullable<B[K]> {
  const handler = backend[name];
  if (handler) return handler as NonNullable<B[K]>;
  throw new Error(
    `${feature} needs the "${name}" capability — ${CAPABILITY_HELP[name]} — which the "${backend.name}" backend does not provide. ` +
      'Use a backend that has it (@accelerate/backend-libtorch has every capability), or add the handler to the backend (see "Writing a backend" in the docs).',
  );
}

/**
 * The backend's `name` capability handler and the named method on it, or one
 * error naming both, the backend and the feature (for optional methods such
 * as `models.addForwardHooks`).
 */
export function requireCapabilityMethod<B extends Backend<any, any, any, any>, K extends BackendCapabilityName, F extends keyof NonNullable<B[K]>>(
  backend: B,
  name: K,
  method: F,
  feature: string,
): NonNullable<B[K]> & Required<Pick<NonNullable<B[K]>, F>> {
  const handler = requireCapability(backend, name, feature) as NonNullable<B[K]>;
  if (typeof (handler as Record<PropertyKey, unknown>)[method as PropertyKey] === 'function') {
    return handler as NonNullable<B[K]> & Required<Pick<NonNullable<B[K]>, F>>;
  }
  throw new Error(
    `${feature} needs ${String(name)}.${String(method)}(), which the "${backend.name}" backend's "${name}" capability does not implement. ` +
      'Use a backend that has it (@accelerate/backend-libtorch), or implement it (see "Writing a backend" in the docs).',
  );
}

/**
 * What `registerBackend` takes: something that can produce a {@link Backend}.
 * `init` is called at most once (memoised); a failure is remembered with its
 * reason and reported in the aggregated "no available backend" error.
 */
export interface BackendFactory {
  init(): Promise<Backend<any, any, any, any>>;
}
