/**
 * `LibtorchBackend`: core's {@link Backend} contract over this package's Tensor,
 * Module, Optimizer and LRScheduler, and the `libtorch()` factory for
 * `registerBackend`.
 * @module
 */
import {
  HostTensor,
  type Backend,
  type BackendFactory,
  type DeviceInfo,
  type DType as CoreDType,
  type GradScaler,
  type GradScalerOptions,
  type Loss,
  type MemoryInfo,
  type MixedPrecision,
  type ProcessGroup,
  type ProcessGroupOptions,
} from '@accelerate/core';
import { GlooProcessGroup } from './distributed.js';
import { setGradientSync, triggerSyncInBackward, unwrapDistributed, wrapDistributed, type DistributedDataParallelOptions } from './ddp.js';
import { native } from './native.js';
import { Module } from './nn/module.js';
import { Optimizer } from './optim/optimizer.js';
import { LRScheduler } from './optim/lr-scheduler.js';
import { fromTypedArray, full, Tensor, type DType, type TypedArray } from './tensor.js';
import { autocast } from './amp.js';

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
    if (native.cudaAvailable()) out.push({ name: 'cuda:0', kind: 'cuda' });
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

  // ---- models ----
  isModel(x: unknown): x is Module {
    return x instanceof Module;
  }
  namedParameters(model: Module): Array<[string, Tensor]> {
    return model.namedParameters();
  }
  stateDict(model: Module): Record<string, Tensor> {
    return model.stateDict();
  }
  loadStateDict(model: Module, state: Record<string, Tensor | HostTensor>, options?: { strict?: boolean }): void {
    model.loadStateDict(state, options);
  }
  moveModel(model: Module, device: string, dtype?: CoreDType): void {
    model.to({ device, dtype: dtype as DType | undefined });
  }
  setTrainingMode(model: Module, training: boolean): void {
    model.train(training);
  }
  /** Patch `model.forward` to run under autocast and return float32 outputs. */
  wrapForwardForPrecision(model: Module, precision: MixedPrecision): Module {
    if (precision === 'no' || (model as unknown as Record<symbol, unknown>)[PATCHED]) return model;
    const inner = model.forward;
    const patched = (...args: unknown[]) => autocast(precision, () => toFloat32(inner.apply(model, args)));
    Object.defineProperty(model, PATCHED, { value: inner, configurable: true });
    model.forward = patched;
    return model;
  }
  /**
   * Data parallelism over a gloo group (see {@link wrapDistributed}): broadcasts rank 0's
   * weights now and returns a proxy of `model` whose backward averages gradients.
   * `options` are `DistributedDataParallelKwargs` fields.
   */
  wrapDistributed(model: Module, group: ProcessGroup<Tensor>, options: Record<string, unknown>): Module {
    return wrapDistributed(model, group, options as DistributedDataParallelOptions);
  }
  /** DDP's `no_sync`: while off, backward of a wrapped model only accumulates locally. */
  setGradientSync(model: Module, enabled: boolean): void {
    setGradientSync(model, enabled);
  }
  /** Make the next backward of a DDP model all-reduce even inside `noSync`. */
  triggerSyncInBackward(model: Module): void {
    triggerSyncInBackward(model);
  }
  /** The original module: the DDP proxy removed (it keeps working); the autocast patch too when `keepFp32Wrapper` is false. */
  unwrapModel(model: Module, options: { keepFp32Wrapper?: boolean } = {}): Module {
    model = unwrapDistributed(model);
    if (options.keepFp32Wrapper ?? true) return model;
    const inner = (model as unknown as Record<symbol, unknown>)[PATCHED] as Module['forward'] | undefined;
    if (inner) {
      model.forward = inner;
      delete (model as unknown as Record<symbol, unknown>)[PATCHED];
    }
    return model;
  }

  // ---- autograd, optimisation ----
  backward(loss: Loss<Tensor>, options: { scale: number; model?: Module }): void {
    const l = typeof loss === 'function' ? loss() : loss;
    if (options.scale === 1) {
      l.backward();
      return;
    }
    const scaled = l.mul(options.scale);
    scaled.backward();
    scaled.dispose();
  }
  grad(param: Tensor): Tensor | null {
    return param.grad;
  }
  clipGradNorm(params: Tensor[], maxNorm: number, normType = 2): number {
    return native.clipGradNorm(params.map((p) => p._h), maxNorm, normType);
  }
  clipGradValue(params: Tensor[], clipValue: number): void {
    native.clipGradValue(params.map((p) => p._h), clipValue);
  }
  isOptimizer(x: unknown): x is Optimizer {
    return x instanceof Optimizer;
  }
  optimizerStep(optimizer: Optimizer): void {
    optimizer.step();
  }
  optimizerZeroGrad(optimizer: Optimizer, setToNone: boolean): void {
    optimizer.zeroGrad(setToNone);
  }
  optimizerParams(optimizer: Optimizer): Tensor[] {
    return optimizer.paramGroups.flatMap((g) => g.params);
  }
  isScheduler(x: unknown): x is LRScheduler {
    return x instanceof LRScheduler;
  }
  schedulerOptimizer(scheduler: LRScheduler): Optimizer {
    return scheduler.optimizer;
  }
  schedulerStep(scheduler: LRScheduler): void {
    scheduler.step();
  }
  moveOptimizerState(optimizer: Optimizer): void {
    optimizer.moveState();
  }
  autocast<R>(precision: MixedPrecision, fn: () => R, options?: { enabled?: boolean }): R {
    return autocast(precision, fn, options);
  }
  createGradScaler(options: GradScalerOptions): GradScaler<Tensor, Optimizer> {
    return new LibtorchGradScaler(options);
  }

  // ---- randomness, memory ----
  manualSeed(seed: number): void {
    native.manualSeed(seed);
  }
  getRngState(): Uint8Array {
    return native.getRngState();
  }
  setRngState(state: Uint8Array): void {
    native.setRngState(state);
  }
  memoryInfo(): MemoryInfo {
    const allocated = native.handleStats().accountedBytes;
    return { allocated, reserved: allocated + native.allocatorStats().cachedBytes };
  }
  isOutOfMemoryError(error: unknown): boolean {
    if (!(error instanceof Error)) return false;
    if ((error as Error & { code?: string }).code === 'ERR_TORCH_OUT_OF_MEMORY') return true;
    return /out of memory|not enough memory/i.test(error.message);
  }
  /** Join the gloo process group (rank 0 hosts the TCPStore rendezvous). */
  initProcessGroup(options: ProcessGroupOptions): Promise<ProcessGroup<Tensor>> {
    return GlooProcessGroup.init(options);
  }
  /** Return the CPU allocator's cached blocks to malloc. */
  emptyCache(): void {
    native.emptyCache();
  }
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
