/**
 * The reference backend: a small, complete, pure-JavaScript implementation
 * of {@link Backend} over host memory. Core's tests use it to exercise the
 * Accelerator end to end without a native engine, and it is the executable
 * example of the contract for backend authors (it passes
 * {@link runBackendConformance}).
 *
 * Scope: float32/float64/integer tensors on `cpu` (plus optional simulated
 * device names), reverse-mode autograd for the ops the fixtures need, SGD,
 * AdamW, LambdaLR, a dynamic loss scaler. Autocast only records the active
 * precision: there is no real fp16 arithmetic on the host.
 * @module
 */
import type {
  AutogradCapability,
  Backend,
  BackendFactory,
  DeviceInfo,
  GradScaler,
  GradScalerOptions,
  Loss,
  MemoryCapability,
  MixedPrecision,
  ModelCapability,
  OptimizerCapability,
  PrecisionCapability,
  RngCapability,
} from '../interfaces/backend.js';
import type { DType, HostTensor } from '../tensor/host-tensor.js';
import { RefModule } from './reference-nn.js';
import { RefGradScaler, RefOptimizer, RefScheduler, type RefOptimizerStateDict } from './reference-optim.js';
import {
  activeAutocastPrecision,
  assignValues,
  castInPlace,
  cat,
  copyToDevice,
  defaultGenerator,
  fromHostTensor,
  fullLike,
  isFloatingDType,
  mulScalar,
  narrow,
  RefTensor,
  runBackward,
  valuesOf,
  withAutocast,
} from './reference-tensor.js';

/** Options of {@link ReferenceBackend}. */
export interface ReferenceBackendOptions {
  /**
   * Device names the backend pretends to have, e.g. `['cuda:0', 'cuda:1']`
   * to test device placement. Tensors are always in host memory; only their
   * `device` label changes. `cpu` is always available and listed last.
   */
  devices?: string[];
}

/** Version string reported by the reference backend. */
export const REFERENCE_BACKEND_VERSION = '0.1.0 (pure JavaScript, host memory)';

/** The pure-JS reference implementation of {@link Backend}. */
export class ReferenceBackend implements Backend<RefTensor, RefModule, RefOptimizer, RefScheduler> {
  readonly name: string = 'reference';
  readonly version = REFERENCE_BACKEND_VERSION;
  private readonly deviceNames: string[];
  private readonly originalForward = new WeakMap<RefModule, RefModule['forward']>();

  constructor(options: ReferenceBackendOptions = {}) {
    const extra = (options.devices ?? []).filter((d) => d !== 'cpu');
    for (const d of extra) {
      if (typeof d !== 'string' || d.length === 0) throw new TypeError(`ReferenceBackend: invalid device name ${JSON.stringify(d)}.`);
    }
    this.deviceNames = [...new Set(extra), 'cpu'];
  }

  // ---- devices -------------------------------------------------------------

  devices(): DeviceInfo[] {
    return this.deviceNames.map((name) => ({ name, kind: name.split(':')[0] }));
  }

  private checkDevice(device: string, where: string): string {
    if (this.deviceNames.includes(device)) return device;
    if (this.deviceNames.includes(`${device}:0`)) return `${device}:0`;
    throw new Error(
      `${where}: unknown device '${device}'. The reference backend has ${this.deviceNames.map((d) => `'${d}'`).join(', ')}; pass devices in ReferenceBackendOptions to simulate more.`,
    );
  }

  /** Precision of the innermost active `precision.autocast` region (`'no'` outside). */
  get activePrecision(): MixedPrecision {
    return activeAutocastPrecision();
  }

  // ---- tensors -------------------------------------------------------------

  isTensor(x: unknown): x is RefTensor {
    return x instanceof RefTensor;
  }

  shape(t: RefTensor): number[] {
    return [...t.shape];
  }

  dtype(t: RefTensor): DType {
    return t.dtype;
  }

  device(t: RefTensor): string {
    return t.device;
  }

  toDevice(t: RefTensor, device: string): RefTensor {
    const d = this.checkDevice(device, 'toDevice');
    return t.device === d ? t : copyToDevice(t, d);
  }

  fromHost(h: HostTensor, device = 'cpu'): RefTensor {
    return fromHostTensor(h, this.checkDevice(device, 'fromHost'));
  }

  toHost(t: RefTensor): HostTensor {
    return t.toHost();
  }

  cat(tensors: RefTensor[], dim: number): RefTensor {
    return cat(tensors, dim);
  }

  narrow(t: RefTensor, dim: number, start: number, length: number): RefTensor {
    return narrow(t, dim, start, length);
  }

  fullLike(like: RefTensor, shape: number[], value: number): RefTensor {
    return fullLike(like, shape, value);
  }

  mulScalar(t: RefTensor, value: number): RefTensor {
    return mulScalar(t, value);
  }

  // ---- capabilities --------------------------------------------------------

  /** {@link RefModule}s: parameters, state dicts, placement. */
  readonly models = {
    isModel: (x: unknown): x is RefModule => x instanceof RefModule,

    namedParameters: (model: RefModule): Array<[string, RefTensor]> => model.namedParameters(),

    /** Parameters and buffers, detached but sharing storage (like PyTorch's `state_dict()`). */
    stateDict: (model: RefModule): Record<string, RefTensor> => {
      const out: Record<string, RefTensor> = {};
      for (const [k, t] of [...model.namedParameters(), ...model.namedBuffers()]) out[k] = t.detach();
      return out;
    },

    /**
     * Copy `state` into the model's parameters and buffers in place (so
     * optimizers keep pointing at them). Shape mismatches always throw; with
     * `strict` (the default) missing and unexpected keys throw too, naming them.
     */
    loadStateDict: (model: RefModule, state: Record<string, RefTensor | HostTensor>, options: { strict?: boolean } = {}): void => {
      const strict = options.strict ?? true;
      const own = new Map([...model.namedParameters(), ...model.namedBuffers()]);
      const missing = [...own.keys()].filter((k) => !(k in state));
      const unexpected = Object.keys(state).filter((k) => !own.has(k));
      const problems: string[] = [];
      if (strict && missing.length > 0) problems.push(`missing key(s) ${missing.map((k) => `"${k}"`).join(', ')}`);
      if (strict && unexpected.length > 0) problems.push(`unexpected key(s) ${unexpected.map((k) => `"${k}"`).join(', ')}`);
      for (const [k, target] of own) {
        const v = state[k];
        if (v === undefined) continue;
        const shape = [...v.shape];
        if (shape.length !== target.shape.length || shape.some((s, i) => s !== target.shape[i])) {
          problems.push(
            `size mismatch for "${k}": the state has shape [${shape.join(', ')}], the model's is [${target.shape.join(', ')}]`,
          );
        }
      }
      if (problems.length > 0) {
        const hint = strict ? ' Pass { strict: false } to load only the keys both have.' : '';
        throw new Error(`loadStateDict: error(s) loading the state dict into ${model.constructor.name}: ${problems.join('; ')}.${hint}`);
      }
      for (const [k, target] of own) {
        const v = state[k];
        if (v === undefined) continue;
        const values = valuesOf(v instanceof RefTensor ? v : fromHostTensor(v));
        assignValues(target, values);
      }
    },

    moveModel: (model: RefModule, device: string, dtype?: DType): void => {
      const d = this.checkDevice(device, 'moveModel');
      if (dtype !== undefined && !isFloatingDType(dtype)) {
        throw new TypeError(`moveModel: models can only be cast to floating dtypes, got '${dtype}'.`);
      }
      for (const [, t] of [...model.namedParameters(), ...model.namedBuffers()]) {
        t.device = d;
        if (t.grad) t.grad.device = d;
        if (dtype !== undefined && isFloatingDType(t.dtype)) {
          castInPlace(t, dtype);
          if (t.grad) castInPlace(t.grad, dtype);
        }
      }
    },

    setTrainingMode: (model: RefModule, training: boolean): void => {
      model.train(training);
    },
  } satisfies ModelCapability<RefTensor, RefModule>;

  /** Reverse-mode autograd over {@link RefTensor}s and gradient clipping. */
  readonly autograd = {
    /** Backpropagate `loss * scale`; gradients accumulate until zeroed. `loss` may be a closure computing it. */
    backward: (loss: Loss<RefTensor>, options: { scale?: number; model?: RefModule } = {}): void => {
      const t = typeof loss === 'function' ? loss() : loss;
      if (!(t instanceof RefTensor)) {
        throw new TypeError('backward: the loss must be a reference-backend tensor (or a function returning one).');
      }
      runBackward(t, options.scale ?? 1);
    },

    grad: (param: RefTensor): RefTensor | null => param.grad,

    /** Scale all gradients so that their global `normType`-norm is at most `maxNorm`; returns the norm before clipping. */
    clipGradNorm: (params: RefTensor[], maxNorm: number, normType = 2): number => {
      const grads = params.map((p) => p.grad).filter((g): g is RefTensor => g !== null);
      if (grads.length === 0) return 0;
      let total: number;
      if (normType === Infinity) {
        total = 0;
        for (const g of grads) for (const v of valuesOf(g)) total = Math.max(total, Math.abs(v));
      } else {
        if (!(normType > 0)) throw new RangeError(`clipGradNorm: normType must be > 0 or Infinity, got ${normType}.`);
        let s = 0;
        for (const g of grads) for (const v of valuesOf(g)) s += Math.abs(v) ** normType;
        total = s ** (1 / normType);
      }
      const coef = maxNorm / (total + 1e-6);
      if (coef < 1) {
        for (const g of grads) assignValues(g, valuesOf(g).map((v) => v * coef));
      }
      return total;
    },

    clipGradValue: (params: RefTensor[], clipValue: number): void => {
      for (const p of params) {
        if (p.grad) assignValues(p.grad, valuesOf(p.grad).map((v) => Math.min(clipValue, Math.max(-clipValue, v))));
      }
    },
  } satisfies AutogradCapability<RefTensor, RefModule>;

  /** {@link RefOptimizer}s (SGD, AdamW) and {@link RefScheduler}s (LambdaLR). */
  readonly optimizers = {
    isOptimizer: (x: unknown): x is RefOptimizer => x instanceof RefOptimizer,

    step: (optimizer: RefOptimizer): void => {
      optimizer.step();
    },

    zeroGrad: (optimizer: RefOptimizer, setToNone: boolean): void => {
      optimizer.zeroGrad(setToNone);
    },

    params: (optimizer: RefOptimizer): RefTensor[] => optimizer.params(),

    moveState: (optimizer: RefOptimizer, device: string): void => {
      const d = this.checkDevice(device, 'optimizers.moveState');
      for (const st of optimizer.state.values()) for (const v of Object.values(st)) if (v instanceof RefTensor) v.device = d;
    },

    /** The optimizer's {@link RefOptimizer.stateDict} (HostTensor copies of its moments). */
    stateDict: (optimizer: RefOptimizer): RefOptimizerStateDict => optimizer.stateDict(),

    /** Restore a state from `optimizers.stateDict`. */
    loadStateDict: (optimizer: RefOptimizer, state: unknown): void => {
      optimizer.loadStateDict(state as RefOptimizerStateDict);
    },

    isScheduler: (x: unknown): x is RefScheduler => x instanceof RefScheduler,

    schedulerOptimizer: (scheduler: RefScheduler): RefOptimizer => scheduler.optimizer,

    schedulerStep: (scheduler: RefScheduler): void => {
      scheduler.step();
    },

    /** The scheduler's {@link RefScheduler.stateDict}. */
    schedulerStateDict: (scheduler: RefScheduler): Record<string, number | number[]> => scheduler.stateDict(),

    /** Restore a state from `optimizers.schedulerStateDict`. */
    loadSchedulerStateDict: (scheduler: RefScheduler, state: unknown): void => {
      scheduler.loadStateDict(state as Record<string, number | number[]>);
    },
  } satisfies OptimizerCapability<RefTensor, RefOptimizer, RefScheduler>;

  /** Autocast regions (recorded, no real fp16 arithmetic) and a dynamic loss scaler. */
  readonly precision = {
    /** Patch `model.forward` to run under autocast for `precision` (outputs are already fp32 on the host). */
    wrapForwardForPrecision: (model: RefModule, precision: MixedPrecision): RefModule => {
      const original = this.originalForward.get(model) ?? model.forward;
      this.originalForward.set(model, original);
      model.forward = (...inputs: RefTensor[]) => withAutocast(precision, () => original.apply(model, inputs));
      return model;
    },

    /** Restore the forward replaced by `wrapForwardForPrecision`. */
    unwrapForwardForPrecision: (model: RefModule): RefModule => {
      const original = this.originalForward.get(model);
      if (original) {
        model.forward = original;
        this.originalForward.delete(model);
      }
      return model;
    },

    /** Run `fn` in an autocast region; tensors computed inside record the precision in `autocastPrecision`. */
    autocast: <R>(precision: MixedPrecision, fn: () => R, options: { enabled?: boolean } = {}): R =>
      withAutocast(precision, fn, options.enabled ?? true),

    createGradScaler: (options: GradScalerOptions): GradScaler<RefTensor, RefOptimizer> => new RefGradScaler(options),
  } satisfies PrecisionCapability<RefTensor, RefModule, RefOptimizer>;

  /** The reference tensors' default generator. */
  readonly rng = {
    manualSeed: (seed: number): void => {
      defaultGenerator.seed(seed);
    },
    getState: (): Uint8Array => defaultGenerator.getState(),
    setState: (state: Uint8Array): void => {
      defaultGenerator.setState(state);
    },
  } satisfies RngCapability;

  /** Out-of-memory detection only (host memory is not tracked). */
  readonly memory = {
    /** True for errors whose message contains "out of memory" (how fake OOMs are raised in tests). */
    isOutOfMemoryError: (error: unknown): boolean => {
      const message =
        typeof error === 'string'
          ? error
          : error !== null && typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string'
            ? (error as { message: string }).message
            : '';
      return message.toLowerCase().includes('out of memory');
    },
  } satisfies MemoryCapability;
}

/** A {@link BackendFactory} for the registry: `registerBackend('reference', referenceBackendFactory())`. */
export function referenceBackendFactory(options: ReferenceBackendOptions = {}): BackendFactory {
  return { init: async () => new ReferenceBackend(options) };
}
