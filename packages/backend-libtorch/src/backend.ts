/**
 * `LibtorchBackend`: core's {@link Backend} contract over this package's Tensor,
 * Module, Optimizer and LRScheduler, and the `libtorch()` factory for
 * `registerBackend`.
 * @module
 */
import { statSync } from 'node:fs';
import {
  dtypeElementBytes,
  HostTensor,
  type AutogradCapability,
  type Backend,
  type BackendFactory,
  type CommunicationCapability,
  type DataParallelCapability,
  type DeviceInfo,
  type DType as CoreDType,
  type GradScaler,
  type GradScalerOptions,
  type HookHandle,
  type Loss,
  type MemoryCapability,
  type MemoryInfo,
  type MixedPrecision,
  type ModelCapability,
  type OptimizerCapability,
  type PrecisionCapability,
  type ProcessGroup,
  type ProcessGroupOptions,
  type RngCapability,
  type ShardingCapability,
} from '@accelerate/core';
import { runThenRestore } from '@accelerate/core/internal';
import { GlooProcessGroup } from './distributed.js';
import { joinDistributed, setGradientSync, triggerSyncInBackward, unwrapDistributed, wrapDistributed } from './ddp.js';
import { native } from './native.js';
import { creationDevice, Module, Parameter } from './nn/module.js';
import { Optimizer, type OptimizerStateDict } from './optim/optimizer.js';
import { LRScheduler } from './optim/lr-scheduler.js';
import { addGradientReadyHook, callOpHandles, empty, fromTypedArray, full, keep, noGrad, Tensor, untracked, type DType, type TypedArray } from './tensor.js';
import { autocast } from './amp.js';
import { shardingCapability } from './sharding.js';

const PATCHED = Symbol('accelerate.precisionForward');

/** Options of {@link libtorch}. */
export interface LibtorchBackendOptions {
  /** Intra-op threads (`torch.set_num_threads`); default: libtorch's choice. */
  numThreads?: number;
}

/** The libtorch compute backend core drives. */
export class LibtorchBackend implements Backend<Tensor, Module, Optimizer, LRScheduler> {
  readonly name = 'libtorch';
  readonly version = `libtorch ${native.torchVersion}`;

  constructor(options: LibtorchBackendOptions = {}) {
    if (options.numThreads) native.setNumThreads(options.numThreads);
  }

  devices(): DeviceInfo[] {
    const out: DeviceInfo[] = [];
    for (let i = 0; i < native.cudaDeviceCount(); i++) out.push({ name: `cuda:${i}`, kind: 'cuda' });
    out.push({ name: 'cpu', kind: 'cpu' });
    return out;
  }

  // ---- tensors ----
  isTensor(x: unknown): x is Tensor {
    return x instanceof Tensor;
  }
  shape(t: Tensor): number[] {
    return t.shape;
  }
  dtype(t: Tensor): CoreDType {
    return t.dtype;
  }
  device(t: Tensor): string {
    return t.device;
  }
  toDevice(t: Tensor, device: string): Tensor {
    const want = device === 'cuda' ? 'cuda:0' : device;
    return t.device === want ? t : t.to({ device: want });
  }
  fromHost(hst: HostTensor, device?: string): Tensor {
    const t = fromTypedArray(hst.data as TypedArray, [...hst.shape], hst.dtype as DType);
    if (!device || device === 'cpu') return t;
    const moved = t.to({ device });
    t.dispose();
    return moved;
  }
  toHost(t: Tensor): HostTensor {
    return new HostTensor(t.dataSync(), t.shape, t.dtype);
  }
  cat(tensors: Tensor[], dim: number): Tensor {
    return new Tensor(native.op(opIdCat(), tensors.map((x) => x._h), dim));
  }
  narrow(t: Tensor, dim: number, start: number, length: number): Tensor {
    return t.narrow(dim, start, length);
  }
  fullLike(like: Tensor, shape: number[], value: number): Tensor {
    return full(shape, value, { dtype: like.dtype, device: like.device });
  }
  mulScalar(t: Tensor, value: number): Tensor {
    return t.mul(value);
  }
  dispose(t: Tensor): void {
    t.dispose();
  }

  emptyTensor(shape: number[], dtype: CoreDType, device = 'cpu'): Tensor {
    return empty(shape, { dtype: dtype as DType, device: device === 'cuda' ? 'cuda:0' : device });
  }
  cast(t: Tensor, dtype: CoreDType): Tensor {
    return t.dtype === dtype ? t : t.to({ dtype: dtype as DType });
  }
  /** `torch.from_file` (MAP_PRIVATE) of the whole file as bytes; tensors are dtype views of slices of it. */
  mapFile(path: string): { tensor(byteOffset: number, shape: number[], dtype: CoreDType): Tensor; close(): void } {
    const size = statSync(path).size;
    let base: Tensor | undefined = size > 0 ? (callOpHandles('from_file', '', path, false, size, 'uint8', null, null, null) as Tensor) : undefined;
    return {
      tensor: (byteOffset: number, shape: number[], dtype: CoreDType): Tensor => {
        const n = shape.reduce((a, b) => a * b, 1);
        if (!base) throw new Error(`mapFile: ${path} is closed or empty.`);
        if (n === 0) return empty(shape, { dtype: dtype as DType });
        const slice = base.narrow(0, byteOffset, n * dtypeElementBytes(dtype));
        const typed = dtype === 'uint8' ? slice : (callOpHandles('view', 'dtype', slice._h, dtype) as Tensor);
        const out = typed.view(shape);
        if (typed !== slice) typed.dispose();
        slice.dispose();
        return out;
      },
      close: () => {
        base?.dispose();
        base = undefined;
      },
    };
  }
  hostBytes(t: Tensor): Uint8Array | undefined {
    if (t.device !== 'cpu' || !t.isContiguous()) return undefined;
    const view = t.sharedData();
    return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  }

  // ---- capabilities ----

  /** Modules: parameters, state dicts, placement, the module tree and forward hooks (big-modeling). */
  readonly models = {
    isModel: (x: unknown): x is Module => x instanceof Module,
    namedParameters: (model: Module): Array<[string, Tensor]> => model.namedParameters(),
    stateDict: (model: Module): Record<string, Tensor> => model.stateDict(),
    loadStateDict: (model: Module, state: Record<string, Tensor | HostTensor>, options?: { strict?: boolean }): void => {
      model.loadStateDict(state, options);
    },
    moveModel: (model: Module, device: string, dtype?: CoreDType): void => {
      // Meta tensors (a model built without memory, e.g. on ranks other than 0 for FSDP's
      // cpu_ram_efficient_loading) have no data to move: they stay placeholders until filled.
      model.to({ device, dtype: dtype as DType | undefined }, { skipMeta: true });
    },
    setTrainingMode: (model: Module, training: boolean): void => {
      model.train(training);
    },
    namedChildren: (model: Module): Array<[string, Module]> => model.namedChildren(),
    moduleClassName: (model: Module): string => model.constructor.name,
    ownTensors: (model: Module): { parameters: Array<[string, Tensor]>; buffers: Array<{ name: string; tensor: Tensor; persistent: boolean }> } => {
      // namedBuffers walks the subtree; the module's own buffers are the undotted names.
      const buffers = model
        .namedBuffers()
        .filter(([n]) => !n.includes('.'))
        .map(([name, tensor]) => ({ name, tensor, persistent: !model._nonPersistent.has(name) }));
      return { parameters: model.namedParameters('', false), buffers };
    },
    /**
     * Replace the module's own tensor `name`: same device kind -> storage swapped
     * in place (`param.data = value`, identity and ties kept); another kind
     * (e.g. cpu <-> meta, which libtorch cannot swap) -> a new Parameter (or
     * buffer) put in every field and registration that held the old one.
     */
    setModuleTensor: (module: Module, name: string, value: Tensor, options: { disposeOld?: boolean } = {}): void => {
      const old = module._parameters.get(name) ?? module._buffers.get(name) ?? ((module as unknown as Record<string, unknown>)[name] as Tensor | undefined);
      if (!(old instanceof Tensor)) {
        throw new Error(`setModuleTensor: ${module.constructor.name} has no parameter or buffer named ${JSON.stringify(name)}.`);
      }
      const kind = (d: string) => d.split(':')[0];
      if (kind(old.device) === kind(value.device)) {
        noGrad(() => native.setData(old._h, value._h));
        return;
      }
      let neu: Tensor;
      // Modules own their tensors: keep() takes the new buffer out of any enclosing tidy scope (hooks run inside forwards).
      if (old instanceof Parameter) neu = new Parameter(value, old.requiresGrad);
      else neu = keep(value.detach());
      const fields = module as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(fields)) if (v === old) fields[k] = neu;
      if (module._parameters.get(name) === old) module._parameters.set(name, neu as Parameter);
      if (module._buffers.get(name) === old) module._buffers.set(name, neu);
      if (options.disposeOld) old.dispose();
    },
    addForwardHooks: (
      module: Module,
      hooks: { pre?: (args: unknown[]) => unknown[] | void; post?: (args: unknown[], output: unknown) => unknown },
    ): HookHandle => {
      // Outside any tidy scope: what a hook allocates (gathered parameters, offloaded weights) outlives the module's forward.
      const handles = [
        hooks.pre ? module.registerForwardPreHook((_m, args) => untracked(() => hooks.pre!(args))) : undefined,
        hooks.post ? module.registerForwardHook((_m, args, out) => untracked(() => hooks.post!(args, out))) : undefined,
      ];
      return { remove: () => handles.forEach((h) => h?.remove()) };
    },
    /** Post-accumulate-grad: `fn(param)` once per backward, once `param.grad` holds the summed gradient (see {@link addGradientReadyHook}). */
    addGradientReadyHook: (param: Tensor, fn: (param: Tensor) => void): { remove(): void } => addGradientReadyHook(param, fn),
    initOnDevice: <R>(device: string, fn: () => R, options: { includeBuffers?: boolean } = {}): R => {
      const prev = { ...creationDevice };
      creationDevice.device = device === 'cuda' ? 'cuda:0' : device;
      creationDevice.includeBuffers = options.includeBuffers ?? false;
      return runThenRestore(fn, () => Object.assign(creationDevice, prev));
    },
  } satisfies ModelCapability<Tensor, Module>;

  /** Backward, gradients and gradient clipping. */
  readonly autograd = {
    backward: (loss: Loss<Tensor>, options: { scale: number; model?: Module }): void => {
      const l = typeof loss === 'function' ? loss() : loss;
      if (options.scale === 1) {
        l.backward();
        return;
      }
      const scaled = l.mul(options.scale);
      scaled.backward();
      scaled.dispose();
    },
    grad: (param: Tensor): Tensor | null => param.grad,
    clipGradNorm: (params: Tensor[], maxNorm: number, normType = 2): number => native.clipGradNorm(params.map((p) => p._h), maxNorm, normType),
    clipGradValue: (params: Tensor[], clipValue: number): void => {
      native.clipGradValue(params.map((p) => p._h), clipValue);
    },
  } satisfies AutogradCapability<Tensor, Module>;

  /** `optim` optimizers and `LRScheduler`s, with their checkpoint states. */
  readonly optimizers = {
    isOptimizer: (x: unknown): x is Optimizer => x instanceof Optimizer,
    step: (optimizer: Optimizer): void => {
      optimizer.step();
    },
    zeroGrad: (optimizer: Optimizer, setToNone: boolean): void => {
      optimizer.zeroGrad(setToNone);
    },
    params: (optimizer: Optimizer): Tensor[] => optimizer.paramGroups.flatMap((g) => g.params),
    moveState: (optimizer: Optimizer): void => {
      optimizer.moveState();
    },
    /** Point each group's parameters at `replace(param)` (e.g. shard stand-ins); before the first step only (see {@link Optimizer.replaceParams}). */
    replaceParams: (optimizer: Optimizer, replace: (param: Tensor) => Tensor): void => {
      optimizer.replaceParams(replace);
    },
    /**
     * The optimizer's `stateDict()` (PyTorch layout: `state` by parameter index,
     * `param_groups` with snake_case hyper-parameters) with every state tensor
     * copied to a HostTensor, for `saveState`.
     */
    stateDict: (optimizer: Optimizer): Record<string, unknown> => {
      const sd = optimizer.stateDict();
      const state: Record<string, Record<string, HostTensor | number>> = {};
      for (const [id, entry] of Object.entries(sd.state)) {
        const out: Record<string, HostTensor | number> = {};
        for (const [k, v] of Object.entries(entry)) {
          if (v instanceof Tensor) {
            out[k] = this.toHost(v);
            v.dispose();
          } else out[k] = v;
        }
        state[id] = out;
      }
      return { state, param_groups: sd.param_groups };
    },
    /** Restore `optimizers.stateDict`'s output; buffers are copied next to their parameters. */
    loadStateDict: (optimizer: Optimizer, state: unknown): void => {
      const sd = state as { state?: Record<string, Record<string, unknown>>; param_groups?: unknown };
      if (!sd || typeof sd !== 'object' || typeof sd.state !== 'object' || !Array.isArray(sd.param_groups)) {
        throw new TypeError('optimizers.loadStateDict: expected { state, param_groups } as optimizers.stateDict() returns.');
      }
      const made: Tensor[] = [];
      const tensors: Record<number, Record<string, Tensor | number>> = {};
      for (const [id, entry] of Object.entries(sd.state ?? {})) {
        const out: Record<string, Tensor | number> = {};
        for (const [k, v] of Object.entries(entry)) {
          if (v instanceof HostTensor) {
            const t = fromTypedArray(v.data as TypedArray, [...v.shape], v.dtype as DType);
            made.push(t);
            out[k] = t;
          } else if (typeof v === 'number') out[k] = v;
        }
        tensors[Number(id)] = out;
      }
      try {
        optimizer.loadStateDict({ state: tensors, param_groups: sd.param_groups as OptimizerStateDict['param_groups'] });
      } finally {
        // The native side copied them.
        for (const t of made) t.dispose();
      }
    },
    isScheduler: (x: unknown): x is LRScheduler => x instanceof LRScheduler,
    schedulerOptimizer: (scheduler: LRScheduler): Optimizer => scheduler.optimizer,
    schedulerStep: (scheduler: LRScheduler): void => {
      scheduler.step();
    },
    /** The scheduler's `stateDict()` (`last_epoch`, `base_lrs`, `_last_lr`). */
    schedulerStateDict: (scheduler: LRScheduler): Record<string, unknown> => scheduler.stateDict(),
    /** Restore a scheduler state (and the learning rates it last set). */
    loadSchedulerStateDict: (scheduler: LRScheduler, state: unknown): void => {
      scheduler.loadStateDict(state as Record<string, unknown>);
    },
  } satisfies OptimizerCapability<Tensor, Optimizer, LRScheduler>;

  /** Autocast (bf16/fp16) and dynamic loss scaling. */
  readonly precision = {
    /** Patch `model.forward` to run under autocast and return float32 outputs. */
    wrapForwardForPrecision: (model: Module, precision: MixedPrecision): Module => {
      if (precision === 'no' || (model as unknown as Record<symbol, unknown>)[PATCHED]) return model;
      const inner = model.forward;
      const patched = (...args: unknown[]) => autocast(precision, () => toFloat32(inner.apply(model, args)));
      Object.defineProperty(model, PATCHED, { value: inner, configurable: true });
      model.forward = patched;
      return model;
    },
    /** Restore the forward `wrapForwardForPrecision` patched (no-op on an unpatched model). */
    unwrapForwardForPrecision: (model: Module): Module => {
      const inner = (model as unknown as Record<symbol, unknown>)[PATCHED] as Module['forward'] | undefined;
      if (inner) {
        model.forward = inner;
        delete (model as unknown as Record<symbol, unknown>)[PATCHED];
      }
      return model;
    },
    autocast: <R>(precision: MixedPrecision, fn: () => R, options?: { enabled?: boolean }): R => autocast(precision, fn, options),
    createGradScaler: (options: GradScalerOptions): GradScaler<Tensor, Optimizer> => new LibtorchGradScaler(options),
  } satisfies PrecisionCapability<Tensor, Module, Optimizer>;

  /** libtorch's default generator(s). */
  readonly rng = {
    manualSeed: (seed: number): void => {
      native.manualSeed(seed);
    },
    getState: (): Uint8Array => native.getRngState(),
    setState: (state: Uint8Array): void => {
      native.setRngState(state);
    },
  } satisfies RngCapability;

  /**
   * CPU memory as this package's allocator counts it: `allocated` is the bytes held by
   * live tensor storages (blocks of 32 KiB and more are rounded up to 4 KiB), exact and
   * cheap (atomic counters); `reserved` adds the allocator's cache.
   */
  readonly memory = {
    info: (device = 'cpu'): MemoryInfo => {
      if (device.split(':')[0] !== 'cpu') return { allocated: 0 };
      const m = native.cpuMemory();
      const cached = native.allocatorStats().cachedBytes;
      // Under ACCELERATE_TORCH_DEFAULT_ALLOCATOR=1 nothing is counted: fall back to the tensor handles' bytes.
      const allocated = m.counted ? m.allocated : native.handleStats().accountedBytes;
      const out: MemoryInfo = { allocated, reserved: allocated + cached };
      if (m.counted) out.peakAllocated = m.peakAllocated;
      if (m.limit !== undefined) out.limit = m.limit;
      return out;
    },
    /** Start `peakAllocated` again from the bytes allocated now. */
    resetPeak: (device = 'cpu'): void => {
      if (device.split(':')[0] === 'cpu') native.resetCpuPeak();
    },
    /**
     * A CPU memory budget: allocations that would take `allocated` past `bytes` throw an
     * "out of memory" error naming the limit (`undefined` removes it). Also settable at
     * load with ACCELERATE_TORCH_CPU_MEMORY_LIMIT_MB.
     */
    setLimit: (device: string, bytes: number | undefined): void => {
      if (device.split(':')[0] !== 'cpu') throw new Error(`memory.setLimit: only the 'cpu' device has a limit in this build, got '${device}'.`);
      native.setCpuMemoryLimit(bytes);
    },
    isOutOfMemoryError: (error: unknown): boolean => {
      if (!(error instanceof Error)) return false;
      if ((error as Error & { code?: string }).code === 'ERR_TORCH_OUT_OF_MEMORY') return true;
      return /out of memory|not enough memory/i.test(error.message);
    },
    /** Return the CPU allocator's cached blocks to malloc. */
    emptyCache: (): void => {
      native.emptyCache();
    },
  } satisfies MemoryCapability;

  /** c10d process groups. */
  readonly communication = {
    /** Join the gloo process group (rank 0 hosts the TCPStore rendezvous). */
    initProcessGroup: (options: ProcessGroupOptions): Promise<ProcessGroup<Tensor>> => GlooProcessGroup.init(options),
  } satisfies CommunicationCapability<Tensor>;

  /** DDP (see `ddp.ts`): bucketed gradient all-reduce overlapped with backward. */
  readonly dataParallel = {
    /**
     * Data parallelism over a gloo group (see {@link wrapDistributed}): broadcasts rank 0's
     * weights now and returns a proxy of `model` whose backward averages gradients.
     * `options` are `DistributedDataParallelKwargs` fields.
     */
    wrap: (model: Module, group: ProcessGroup<Tensor>, options: Record<string, unknown>): Module =>
      wrapDistributed(model, group, options),
    /** The original module, the DDP proxy removed (the proxy keeps working). */
    unwrap: (model: Module): Module => unwrapDistributed(model),
    /** DDP's `no_sync`: while off, backward of a wrapped model only accumulates locally. */
    setGradientSync: (model: Module, enabled: boolean): void => {
      setGradientSync(model, enabled);
    },
    /** Make the next backward of a DDP model all-reduce even inside `noSync`. */
    triggerSyncInBackward: (model: Module): void => {
      triggerSyncInBackward(model);
    },
    /** Uneven inputs across ranks (see {@link joinDistributed}); every model must be wrapped for data parallelism. */
    joinUnevenInputs: <R>(models: Module[], fn: () => R | Promise<R>, options: { divideByInitialWorldSize: boolean }): Promise<R> =>
      joinDistributed(models, fn, options),
  } satisfies DataParallelCapability<Tensor, Module>;

  /**
   * Flat parameter buffers with releasable storage, `param.data` re-pointing, tensor
   * gradient hooks, backward-end callbacks and activation checkpointing: what sharded
   * strategies (FSDP, ZeRO) build on. See `sharding.ts` for each method's notes.
   */
  readonly sharding: ShardingCapability<Tensor, Module> = shardingCapability();
}

let catId = -1;
function opIdCat(): number {
  if (catId < 0) catId = native.opLookup('aten::cat', '').id;
  return catId;
}

function toFloat32(out: unknown): unknown {
  if (out instanceof Tensor) {
    if (out.dtype === 'bfloat16' || out.dtype === 'float16') {
      const f = out.float();
      out.dispose();
      return f;
    }
    return out;
  }
  if (Array.isArray(out)) return out.map(toFloat32);
  if (out && typeof out === 'object' && Object.getPrototypeOf(out) === Object.prototype) {
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, toFloat32(v)]));
  }
  return out;
}

/**
 * Dynamic loss scaling as `torch.cuda.amp.GradScaler`: scale the loss, unscale
 * gradients before the step, skip steps whose gradients hold inf/NaN and back off.
 */
export class LibtorchGradScaler implements GradScaler<Tensor, Optimizer> {
  private scaleValue: number;
  private growthTracker = 0;
  private unscaled = new Set<Optimizer>();
  private foundInf = false;

  constructor(private readonly o: GradScalerOptions) {
    this.scaleValue = o.initScale;
  }
  scale(loss: Tensor): Tensor {
    return this.o.enabled ? loss.mul(this.scaleValue) : loss;
  }
  unscale(optimizer: Optimizer): void {
    if (!this.o.enabled || this.unscaled.has(optimizer)) return;
    const params = optimizer.paramGroups.flatMap((g) => g.params).map((p) => p._h);
    const finite = native.scaleGrads(params, 1 / this.scaleValue);
    if (!finite) this.foundInf = true;
    this.unscaled.add(optimizer);
  }
  step(optimizer: Optimizer): boolean {
    if (!this.o.enabled) {
      optimizer.step();
      return true;
    }
    this.unscale(optimizer);
    if (this.foundInf) return false;
    optimizer.step();
    return true;
  }
  update(): void {
    if (!this.o.enabled) return;
    if (this.foundInf) {
      this.scaleValue *= this.o.backoffFactor;
      this.growthTracker = 0;
    } else if (++this.growthTracker >= this.o.growthInterval) {
      this.scaleValue *= this.o.growthFactor;
      this.growthTracker = 0;
    }
    this.foundInf = false;
    this.unscaled.clear();
  }
  getScale(): number {
    return this.scaleValue;
  }
  stateDict(): Record<string, number> {
    return {
      scale: this.scaleValue,
      growth_factor: this.o.growthFactor,
      backoff_factor: this.o.backoffFactor,
      growth_interval: this.o.growthInterval,
      _growth_tracker: this.growthTracker,
    };
  }
  loadStateDict(state: Record<string, number>): void {
    this.scaleValue = state.scale ?? this.scaleValue;
    this.growthTracker = state._growth_tracker ?? 0;
  }
}

/** A core {@link BackendFactory} producing a {@link LibtorchBackend}. */
export function libtorch(options: LibtorchBackendOptions = {}): BackendFactory {
  return { init: async () => new LibtorchBackend(options) };
}
