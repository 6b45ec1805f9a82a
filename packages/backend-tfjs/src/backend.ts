/**
 * `TfjsBackend`: core's {@link Backend} contract over TensorFlow.js, and the
 * `tfjs()` factory for `registerBackend` / discovery.
 *
 * - Tensors are `tf.Tensor` (float32, int32 and bool; see {@link TfjsBackend.fromHost}).
 * - Models are `tf.LayersModel` (stable names, see `layers-names`) or
 *   {@link TfjsModule} (named variables, PyTorch layout for {@link Linear}).
 * - Optimizers are {@link TfjsOptimizer}s (`tf.train.*` bound to variables).
 * - Gradients: `backward` stores them per variable and accumulates until
 *   `zeroGrad`; the loss is a closure or a recorded tensor (see `autograd`).
 * - Precision: tfjs computes in float32 only; `fp16`, `bf16` and `fp8` are
 *   refused with an error at `prepare` (no silent fp32 run).
 * @module
 */
import {
  HostTensor,
  type AutogradCapability,
  type Backend,
  type BackendFactory,
  type CommunicationCapability,
  type DataParallelCapability,
  type DeviceInfo,
  type DType,
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
} from '@accelerate/core';
import { bfloat16BitsToNumber, float16BitsToNumber } from '@accelerate/core/internal';
import { accumulateGradients, discardRecording, gradOf, noGrad, setGrad } from './autograd.js';
import { initTfjsProcessGroup, type GlooImporter } from './distributed.js';
import { selectTfjsBackend, type TfjsEngine, type TfjsEnginePreference } from './engines.js';
import { registerFileRouters } from './io.js';
import { layersModelWeights } from './layers-names.js';
import { stateToTfjsLayout, tfjsStateDict } from './checkpoint.js';
import { TfjsModule } from './module.js';
import { TfjsLambdaLR, TfjsOptimizer } from './optim.js';
import * as rngState from './rng.js';
import { tf } from './tf.js';
import { registerWasmTransposedMatMul } from './wasm-matmul.js';

/** Models the tfjs backend accepts. */
export type TfjsModel = tf.LayersModel | TfjsModule;

/** Options of {@link tfjs} / {@link TfjsBackend.create}. */
export interface TfjsBackendOptions {
  /** Engine (default: env `ACCELERATE_TFJS_BACKEND`, else `auto`). */
  engine?: TfjsEnginePreference;
  /** Register the transpose-first wasm BatchMatMul (default true; only on wasm). */
  patchWasmMatMul?: boolean;
  /** `tf.enableProdMode()`: no debug checks, no Node banner (default true). */
  prodMode?: boolean;
  /** Register the `file://` save/load router when no other handles it (default true). */
  fileRouter?: boolean;
  /** How `@accelerate/backend-libtorch` is imported for process groups (tests). */
  glooImporter?: GlooImporter;
  env?: Readonly<Record<string, string | undefined>>;
}

interface DistributedState {
  group: ProcessGroup<tf.Tensor>;
  sync: boolean;
  /** Resolves once rank 0's parameters were copied in. */
  ready: Promise<void>;
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/** The TensorFlow.js compute backend core drives. Create it with {@link TfjsBackend.create} or {@link tfjs}. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** True when the active tfjs backend copies a new tensor's values into its own memory at creation (wasm). */
function copiesOnWrite(): boolean {
  return tf.getBackend() === 'wasm';
}

export class TfjsBackend implements Backend<tf.Tensor, TfjsModel, TfjsOptimizer, TfjsLambdaLR> {
  readonly name = 'tfjs';
  /** tfjs tensors are immutable: core runs collectives on host copies. */
  readonly hostTransport = true;
  readonly version: string;
  /** The engine tfjs runs on. */
  readonly engine: TfjsEngine;
  /**
   * The loss returned by the last closure passed to `backward` (kept until
   * the next one; read it for logging). Undefined after a tensor loss.
   */
  lastLoss: tf.Scalar | undefined;

  private readonly distributed = new Map<TfjsModel, DistributedState>();
  private pendingSync: Promise<void> | undefined;
  private readonly glooImporter?: GlooImporter;

  private constructor(engineName: TfjsEngine, options: TfjsBackendOptions) {
    this.engine = engineName;
    this.version = `tfjs ${tf.version_core} (${engineName})`;
    this.glooImporter = options.glooImporter;
  }

  /** Select the engine (explicitly; see `selectTfjsBackend`), apply the wasm fix and the file router. */
  static async create(options: TfjsBackendOptions = {}): Promise<TfjsBackend> {
    if (options.prodMode ?? true) tf.enableProdMode();
    const selection = await selectTfjsBackend({ engine: options.engine, env: options.env });
    if (selection.engine === 'wasm' && (options.patchWasmMatMul ?? true)) registerWasmTransposedMatMul();
    if (options.fileRouter ?? true) registerFileRouters();
    return new TfjsBackend(selection.engine, options);
  }

  private get deviceName(): string {
    return this.engine === 'tfjs-node-gpu' ? 'cuda:0' : 'cpu';
  }

  /** One device: the engine's (tfjs places tensors itself). `cuda:0` for tfjs-node-gpu, else `cpu`. */
  devices(): DeviceInfo[] {
    const name = this.deviceName;
    return [{ name, kind: name === 'cpu' ? 'cpu' : 'cuda', totalMemory: undefined }];
  }

  // ---- tensors ----
  isTensor(x: unknown): x is tf.Tensor {
    return x instanceof tf.Tensor;
  }
  shape(t: tf.Tensor): number[] {
    return [...t.shape];
  }
  dtype(t: tf.Tensor): DType {
    switch (t.dtype) {
      case 'float32':
      case 'int32':
      case 'bool':
        return t.dtype;
      default:
        throw new Error(`tfjs tensors of dtype ${t.dtype} have no core equivalent; cast to float32 or int32 first.`);
    }
  }
  device(_t: tf.Tensor): string {
    return this.deviceName;
  }
  toDevice(t: tf.Tensor, device: string): tf.Tensor {
    this.checkDevice(device);
    return t;
  }
  private checkDevice(device: string): void {
    const want = device === 'cuda' ? 'cuda:0' : device;
    if (want !== this.deviceName) {
      throw new Error(`tfjs (${this.engine}) has one device, "${this.deviceName}"; cannot place a tensor on "${device}".`);
    }
  }
  /**
   * A tensor from host data. tfjs stores float32, int32 and bool only:
   * float64 and 16-bit floats become float32; int8/int16/uint8 and int64
   * (within ±2^31) become int32; an int64 value outside int32 throws.
   */
  fromHost(h: HostTensor, device?: string): tf.Tensor {
    if (device !== undefined) this.checkDevice(device);
    const shape = [...h.shape];
    switch (h.dtype) {
      case 'float32':
        // The caller may reuse its buffer: copy, unless the engine copies on write anyway (wasm copies
        // into its heap at once; cpu and tfjs-node keep the array until later).
        return tf.tensor(copiesOnWrite() ? (h.data as Float32Array) : (h.data as Float32Array).slice(), shape, 'float32');
      case 'float64':
        return tf.tensor(Float32Array.from(h.data as Float64Array), shape, 'float32');
      case 'float16':
        return tf.tensor(Float32Array.from(h.data as Uint16Array, float16BitsToNumber), shape, 'float32');
      case 'bfloat16':
        return tf.tensor(Float32Array.from(h.data as Uint16Array, bfloat16BitsToNumber), shape, 'float32');
      case 'int32':
        return tf.tensor(copiesOnWrite() ? (h.data as Int32Array) : (h.data as Int32Array).slice(), shape, 'int32');
      case 'int8':
      case 'int16':
      case 'uint8':
        return tf.tensor(Int32Array.from(h.data as Int8Array), shape, 'int32');
      case 'int64': {
        const src = h.data as BigInt64Array;
        const out = new Int32Array(src.length);
        // Read the two 32-bit halves instead of converting a BigInt per element (labels arrive as int64
        // every step): a value fits int32 when its high word is the sign extension of its low word.
        const words = LITTLE_ENDIAN ? new Int32Array(src.buffer, src.byteOffset, src.length * 2) : undefined;
        for (let i = 0; i < src.length; i++) {
          let v: number;
          if (words) {
            v = words[2 * i];
            if (words[2 * i + 1] !== v >> 31) v = Number(src[i]);
          } else v = Number(src[i]);
          if (v < INT32_MIN || v > INT32_MAX) {
            throw new RangeError(`tfjs has no int64: element ${i} of an int64 tensor is ${src[i]}, outside int32. Keep such values on the host or rescale them.`);
          }
          out[i] = v;
        }
        return tf.tensor(out, shape, 'int32');
      }
      case 'bool':
        return tf.tensor((h.data as Uint8Array).slice(), shape, 'bool');
    }
  }
  toHost(t: tf.Tensor): HostTensor {
    const dtype = this.dtype(t);
    const data = t.dataSync();
    // dataSync may return the backend's own buffer: copy so later writes cannot alias.
    if (dtype === 'float32') return new HostTensor(Float32Array.from(data as Float32Array), t.shape, dtype);
    if (dtype === 'int32') return new HostTensor(Int32Array.from(data as Int32Array), t.shape, dtype);
    return new HostTensor(Uint8Array.from(data as Uint8Array), t.shape, dtype);
  }
  cat(tensors: tf.Tensor[], dim: number): tf.Tensor {
    return tensors.length === 1 ? tensors[0].clone() : tf.concat(tensors, dim);
  }
  narrow(t: tf.Tensor, dim: number, start: number, length: number): tf.Tensor {
    const size = t.shape[dim];
    if (size === undefined || start < 0 || length < 0 || start + length > size) {
      throw new RangeError(`narrow: start ${start} + length ${length} exceeds dimension ${dim} of size ${size} (shape [${t.shape.join(', ')}]).`);
    }
    const begin = t.shape.map((_, i) => (i === dim ? start : 0));
    const sz = t.shape.map((s, i) => (i === dim ? length : s));
    return tf.slice(t, begin, sz);
  }
  fullLike(like: tf.Tensor, shape: number[], value: number): tf.Tensor {
    return tf.fill(shape, value, like.dtype);
  }
  mulScalar(t: tf.Tensor, value: number): tf.Tensor {
    return tf.mul(t, tf.scalar(value, t.dtype === 'int32' && Number.isInteger(value) ? 'int32' : 'float32'));
  }
  dispose(t: tf.Tensor): void {
    t.dispose();
  }

  // ---- capabilities ----

  /** `tf.LayersModel`s and {@link TfjsModule}s: named weights, state dicts (tfjs or torch layout), train/eval. */
  readonly models = {
    isModel: (x: unknown): x is TfjsModel => x instanceof tf.LayersModel || x instanceof TfjsModule,
    /** Trainable variables by stable name (LayersModel: trainable weights; TfjsModule: its parameters). */
    namedParameters: (model: TfjsModel): Array<[string, tf.Variable]> => {
      if (model instanceof TfjsModule) return model.namedParameters();
      return layersModelWeights(model)
        .filter((w) => w.trainable)
        .map((w) => [w.name, w.variable]);
    },
    /** Every weight (parameters and buffers such as BatchNorm statistics) by name: the live variables, not copies. */
    stateDict: (model: TfjsModel): Record<string, tf.Variable> => this.liveWeights(model),
    /**
     * The weights in the torch layout checkpoints use (what {@link tfjsStateDict} gives):
     * a LayersModel's `layers.0.kernel` `[in, out]` is written as `layers.0.weight`
     * `[out, in]`, so PyTorch and libtorch load `saveModel`/`saveState` files.
     */
    checkpointStateDict: (model: TfjsModel): Record<string, HostTensor> => tfjsStateDict(model, 'torch'),
    /**
     * Load by name. A LayersModel accepts its own (tfjs) names and layout or the
     * torch layout of `checkpointStateDict` / PyTorch, told apart by the names.
     */
    loadStateDict: (model: TfjsModel, state: Record<string, tf.Tensor | HostTensor>, options: { strict?: boolean } = {}): void => {
      const strict = options.strict ?? true;
      const { state: converted, created } = stateToTfjsLayout(model, state, strict);
      try {
        this.loadTfjsLayout(model, converted, strict);
      } finally {
        for (const t of created) t.dispose();
      }
    },
    /** Nothing moves (one device); a dtype other than float32 is refused because tfjs computes in float32 only. */
    moveModel: (model: TfjsModel, device: string, dtype?: DType): void => {
      if (device !== undefined) this.checkDevice(device);
      if (dtype !== undefined && dtype !== 'float32') {
        throw new Error(`tfjs models compute in float32 only; cannot cast ${model.constructor.name} to ${dtype}.`);
      }
    },
    /** TfjsModule: train()/eval(). LayersModel: no-op — pass `{ training }` to `model.apply` instead. */
    setTrainingMode: (model: TfjsModel, training: boolean): void => {
      if (model instanceof TfjsModule) model.train(training);
    },
  } satisfies ModelCapability<tf.Tensor, TfjsModel>;

  private liveWeights(model: TfjsModel): Record<string, tf.Variable> {
    if (model instanceof TfjsModule) return model.stateDict();
    return Object.fromEntries(layersModelWeights(model).map((w) => [w.name, w.variable]));
  }

  private loadTfjsLayout(model: TfjsModel, state: Record<string, tf.Tensor | HostTensor>, strict: boolean): void {
    const target = this.liveWeights(model);
    if (strict) {
      const missing = Object.keys(target).filter((k) => !(k in state));
      const unexpected = Object.keys(state).filter((k) => !(k in target));
      if (missing.length || unexpected.length) {
        throw new Error(
          `loadStateDict (strict): ${missing.length ? `missing keys ${missing.map((k) => JSON.stringify(k)).join(', ')}` : ''}` +
            `${missing.length && unexpected.length ? '; ' : ''}${unexpected.length ? `unexpected keys ${unexpected.map((k) => JSON.stringify(k)).join(', ')}` : ''}. ` +
            `The model has ${Object.keys(target).join(', ')}. Pass { strict: false } to load the matching keys only.`,
        );
      }
    }
    for (const [name, v] of Object.entries(target)) {
      const value = state[name];
      if (value === undefined) continue;
      const vshape = value instanceof HostTensor ? [...value.shape] : value.shape;
      if (vshape.length !== v.shape.length || vshape.some((s, i) => s !== v.shape[i])) {
        throw new Error(`loadStateDict: ${JSON.stringify(name)} has shape [${vshape.join(', ')}] but the model's is [${v.shape.join(', ')}].`);
      }
      noGrad(() =>
        tf.tidy(() => {
          const t = value instanceof HostTensor ? this.fromHost(value) : (value as tf.Tensor);
          v.assign(t.dtype === v.dtype ? t : tf.cast(t, v.dtype));
        }),
      );
    }
  }

  /** Precision: float32 only (see `wrapForwardForPrecision`). No autocast, no loss scaler. */
  readonly precision = {
    /**
     * Refuses `fp16`, `bf16` and `fp8`: tfjs has no 16-bit or 8-bit float
     * kernels (its float16 exists only as a storage format of the WebGL
     * backend), so mixed precision would silently run in float32.
     */
    wrapForwardForPrecision: (model: TfjsModel, precision: MixedPrecision): TfjsModel => {
      if (precision === 'no') return model;
      throw new Error(
        `mixedPrecision "${precision}" is not supported by the tfjs backend: TensorFlow.js computes in float32 only (no float16/bfloat16/fp8 kernels on wasm, cpu or tfjs-node). ` +
          'Use mixedPrecision "no", or the libtorch backend for bf16/fp16.',
      );
    },
    /** Nothing to undo: `wrapForwardForPrecision` never patches. */
    unwrapForwardForPrecision: (model: TfjsModel): TfjsModel => model,
  } satisfies PrecisionCapability<tf.Tensor, TfjsModel, TfjsOptimizer>;

  /**
   * Data parallelism without a native reducer: rank 0's parameters are
   * broadcast (awaited by the next `backward`), and gradients are averaged over
   * the group when `backward` runs on a sync step — so with several processes
   * `await accelerator.backward(...)` and pass the loss as a closure.
   */
  readonly dataParallel = {
    wrap: (model: TfjsModel, group: ProcessGroup<tf.Tensor>): TfjsModel => {
      const vars = Object.values(this.liveWeights(model));
      const bufs = vars.map((v) => Float32Array.from(v.dataSync() as Float32Array));
      const works = bufs.map((b) => group.broadcast(b, 0));
      const ready = (async () => {
        for (const w of works) await w.wait();
        noGrad(() => vars.forEach((v, i) => v.assign(tf.tensor(bufs[i], v.shape, 'float32'))));
      })();
      ready.catch(() => undefined); // surfaced by backward
      this.distributed.set(model, { group, sync: true, ready });
      return model;
    },
    /** The model itself: `wrap` does not wrap. */
    unwrap: (model: TfjsModel): TfjsModel => model,
    setGradientSync: (model: TfjsModel, enabled: boolean): void => {
      const d = this.distributed.get(model);
      if (d) d.sync = enabled;
    },
  } satisfies DataParallelCapability<tf.Tensor, TfjsModel>;

  /** Gradients stored per variable (see `autograd`), accumulated until `zeroGrad`. */
  readonly autograd = {
    /**
     * Add `scale * d loss / d params` to the stored gradients. `loss` is a
     * closure returning the loss (recommended: works for every model), or a
     * loss tensor computed after a recorded forward pass (a TfjsModule in
     * training mode, or after `startRecording()`). On several processes the
     * returned promise resolves once gradients are averaged: await it.
     */
    backward: (loss: Loss<tf.Tensor>, options: { scale: number; model?: TfjsModel }): void | Promise<void> => {
      if (this.distributed.size > 0) return this.backwardDistributed(loss, options.scale);
      this.computeGradients(loss, options.scale);
    },
    grad: (param: tf.Tensor): tf.Tensor | null => gradOf(param),
    clipGradNorm: (params: tf.Tensor[], maxNorm: number, normType = 2): number => {
      const pairs = params.map((p) => [p as tf.Variable, gradOf(p)] as const).filter((x): x is readonly [tf.Variable, tf.Tensor] => x[1] !== null);
      if (pairs.length === 0) return 0;
      const total = noGrad(() =>
        tf.tidy(() => {
          const grads = pairs.map(([, g]) => g);
          if (normType === Infinity) return tf.max(tf.stack(grads.map((g) => tf.max(tf.abs(g)))));
          if (normType === 2) return tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g)))));
          return tf.pow(tf.addN(grads.map((g) => tf.sum(tf.pow(tf.abs(g), normType)))), 1 / normType);
        }),
      );
      const norm = total.dataSync()[0];
      total.dispose();
      const coef = maxNorm / (norm + 1e-6);
      if (coef < 1) noGrad(() => pairs.forEach(([p, g]) => setGrad(p, tf.mul(g, coef))));
      return norm;
    },
    clipGradValue: (params: tf.Tensor[], clipValue: number): void => {
      noGrad(() => {
        for (const p of params) {
          const g = gradOf(p);
          if (g) setGrad(p as tf.Variable, tf.clipByValue(g, -clipValue, clipValue));
        }
      });
    },
  } satisfies AutogradCapability<tf.Tensor, TfjsModel>;

  private computeGradients(loss: Loss<tf.Tensor>, scale: number): void {
    const { value } = accumulateGradients(loss, scale);
    if (typeof loss === 'function') {
      this.lastLoss?.dispose();
      this.lastLoss = value ? tf.keep(value) : undefined;
    }
  }

  private backwardDistributed(loss: Loss<tf.Tensor>, scale: number): Promise<void> {
    const states = [...this.distributed.values()];
    if (typeof loss !== 'function') this.computeGradients(loss, scale); // the tape must be used now
    const run = async () => {
      for (const s of states) await s.ready;
      if (typeof loss === 'function') this.computeGradients(loss, scale);
      for (const [model, s] of this.distributed) if (s.sync) await this.averageGradients(model, s.group);
    };
    const p = run().finally(() => {
      if (this.pendingSync === p) this.pendingSync = undefined;
    });
    this.pendingSync = p;
    return p;
  }

  /** All-reduce (average) the stored gradients of `model` as one flat float32 buffer. */
  private async averageGradients(model: TfjsModel, group: ProcessGroup<tf.Tensor>): Promise<void> {
    const params = this.models.namedParameters(model).map(([, p]) => p);
    const sizes = params.map((p) => p.size);
    const flat = new Float32Array(sizes.reduce((a, b) => a + b, 0));
    let off = 0;
    params.forEach((p, i) => {
      const g = gradOf(p);
      if (g) flat.set(g.dataSync() as Float32Array, off); // a missing gradient counts as zeros, as in DDP
      off += sizes[i];
    });
    await group.allReduce(flat, 'avg').wait();
    off = 0;
    params.forEach((p, i) => {
      setGrad(p, tf.tensor(flat.subarray(off, off + sizes[i]), p.shape, 'float32'));
      off += sizes[i];
    });
  }

  /**
   * Resolves once the gradient all-reduce started by the last `backward` is
   * done (at once on one process). `Accelerator.backward` returns the same
   * promise, so `await accelerator.backward(loss)` is enough in user loops.
   */
  whenGradientsReady(): Promise<void> {
    return this.pendingSync ?? Promise.resolve();
  }

  /** {@link TfjsOptimizer}s (`tf.train.*` bound to variables) and {@link TfjsLambdaLR}. */
  readonly optimizers = {
    isOptimizer: (x: unknown): x is TfjsOptimizer => x instanceof TfjsOptimizer,
    step: (optimizer: TfjsOptimizer): void => {
      if (this.pendingSync) {
        throw new Error(
          'optimizer.step() ran while the gradient all-reduce of the last backward was still in flight: with the tfjs backend on several processes, ' +
            '`await backend.whenGradientsReady()` (or await the promise backward returned) before stepping.',
        );
      }
      optimizer.step();
    },
    zeroGrad: (optimizer: TfjsOptimizer, setToNone: boolean): void => {
      optimizer.zeroGrad(setToNone);
    },
    params: (optimizer: TfjsOptimizer): tf.Variable[] => optimizer.params,
    /**
     * The optimizer's slot variables (`tf.Optimizer.getWeights()`: the
     * iteration count, moments, accumulators) as HostTensors, and its learning
     * rate, for `saveState`.
     */
    stateDict: async (optimizer: TfjsOptimizer): Promise<{ lr: number; weights: Array<{ name: string; tensor: HostTensor }> }> => {
      const weights = await optimizer.optimizer.getWeights();
      return { lr: optimizer.lr, weights: weights.map((w) => ({ name: w.name, tensor: this.toHost(w.tensor) })) };
    },
    /** Restore `optimizers.stateDict`'s output (`tf.Optimizer.setWeights`; slots are matched by position). */
    loadStateDict: async (optimizer: TfjsOptimizer, state: unknown): Promise<void> => {
      const s = state as { lr?: unknown; weights?: Array<{ name?: unknown; tensor?: unknown }> };
      if (!s || !Array.isArray(s.weights) || s.weights.some((w) => typeof w?.name !== 'string' || !(w.tensor instanceof HostTensor))) {
        throw new TypeError('optimizers.loadStateDict: expected { lr, weights: [{ name, tensor }] } as optimizers.stateDict() returns.');
      }
      const tensors = s.weights.map((w) => ({ name: w.name as string, tensor: this.fromHost(w.tensor as HostTensor) }));
      try {
        await optimizer.optimizer.setWeights(tensors);
      } finally {
        // setWeights made variables of them.
        for (const t of tensors) t.tensor.dispose();
      }
      if (typeof s.lr === 'number') optimizer.lr = s.lr;
    },
    isScheduler: (x: unknown): x is TfjsLambdaLR => x instanceof TfjsLambdaLR,
    schedulerOptimizer: (scheduler: TfjsLambdaLR): TfjsOptimizer => scheduler.optimizer,
    schedulerStep: (scheduler: TfjsLambdaLR): void => {
      scheduler.step();
    },
    /** The schedule's position (`last_epoch`), base rate and current rate. */
    schedulerStateDict: (scheduler: TfjsLambdaLR): { last_epoch: number; base_lr: number; lr: number } => ({
      last_epoch: scheduler.lastEpoch,
      base_lr: scheduler.baseLr,
      lr: scheduler.optimizer.lr,
    }),
    /** Restore `schedulerStateDict`'s output and the rate it had set. */
    loadSchedulerStateDict: (scheduler: TfjsLambdaLR, state: unknown): void => {
      const s = state as { last_epoch?: unknown; base_lr?: unknown; lr?: unknown };
      if (typeof s?.last_epoch !== 'number') throw new TypeError('loadSchedulerStateDict: expected { last_epoch, base_lr, lr } as schedulerStateDict() returns.');
      scheduler.lastEpoch = s.last_epoch;
      if (typeof s.base_lr === 'number') (scheduler as { baseLr: number }).baseLr = s.base_lr;
      scheduler.optimizer.lr = typeof s.lr === 'number' ? s.lr : scheduler.baseLr * scheduler.lrLambda(scheduler.lastEpoch);
    },
  } satisfies OptimizerCapability<tf.Tensor, TfjsOptimizer, TfjsLambdaLR>;

  /** This package's generator (tfjs has no global one; see the `rng` module for what is reproducible). */
  readonly rng = {
    manualSeed: (seed: number): void => {
      rngState.manualSeed(seed);
    },
    getState: (): Uint8Array => rngState.getRngState(),
    setState: (state: Uint8Array): void => {
      rngState.setRngState(state);
    },
  } satisfies RngCapability;

  readonly memory = {
    /** Bytes held by tfjs tensors (`tf.memory().numBytes`). */
    info: (): MemoryInfo => ({ allocated: tf.memory().numBytes }),
    isOutOfMemoryError: (error: unknown): boolean => {
      if (!(error instanceof Error)) return false;
      return /out of memory|OOM when allocating|Array buffer allocation failed|Cannot enlarge memory|Aborted\(OOM\)/i.test(error.message);
    },
    /** Drop the gradient tape, if one is recording (wasm memory itself cannot shrink). */
    emptyCache: (): void => {
      discardRecording();
    },
  } satisfies MemoryCapability;

  readonly communication = {
    /** Join a process group through `@accelerate/backend-libtorch`'s gloo (host buffers); throws what to install without it. */
    initProcessGroup: (options: ProcessGroupOptions): Promise<ProcessGroup<tf.Tensor>> => initTfjsProcessGroup(options, this.glooImporter),
  } satisfies CommunicationCapability<tf.Tensor>;
}

/** A core {@link BackendFactory} producing a {@link TfjsBackend}. */
export function tfjs(options: TfjsBackendOptions = {}): BackendFactory {
  return { init: () => TfjsBackend.create(options) };
}
