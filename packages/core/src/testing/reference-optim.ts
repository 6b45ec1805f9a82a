/**
 * Optimizers, a learning-rate scheduler and a dynamic loss scaler for the
 * reference backend. Update rules follow PyTorch's documented algorithms
 * (`torch.optim.SGD`, `torch.optim.AdamW`, `LambdaLR`, `torch.amp.GradScaler`)
 * so that tests can compare against hand-computed or PyTorch-computed values.
 * @module
 */
import type { GradScaler, GradScalerOptions } from '../interfaces/backend.js';
import { HostTensor } from '../tensor/host-tensor.js';
import { assignValues, fromHostTensor, mulScalar, RefTensor, valuesOf, zeros } from './reference-tensor.js';

/** Hyperparameters of one parameter group. `initialLr` is set by schedulers (PyTorch's `initial_lr`). */
export interface HyperParams {
  lr: number;
  initialLr?: number;
}

/** A parameter group: parameters sharing hyperparameters. */
export type ParamGroup<H extends HyperParams = HyperParams> = H & { params: RefTensor[] };

/** Per-parameter optimizer state: tensors (moments, momentum buffers) and numbers (step counts). */
export type ParamState = Record<string, RefTensor | number>;

/**
 * Serializable optimizer state, laid out like PyTorch's: per-parameter state
 * keyed by the parameter's index across all groups, and the groups with their
 * hyperparameters and parameter indices.
 */
export interface RefOptimizerStateDict {
  state: Record<string, Record<string, HostTensor | number>>;
  paramGroups: Array<Record<string, number | boolean | number[]>>;
}

/** What optimizers accept as parameters: a list, or groups with per-group overrides. */
export type ParamsInput<H extends HyperParams> = RefTensor[] | Array<{ params: RefTensor[] } & Partial<H>>;

/** Base class of reference optimizers (after `torch.optim.Optimizer`). */
export abstract class RefOptimizer<H extends HyperParams = HyperParams> {
  /** Groups of parameters with their hyperparameters (`lr` is what schedulers change). */
  readonly paramGroups: Array<ParamGroup<H>>;
  /** Per-parameter state (created lazily on the first step). */
  readonly state = new Map<RefTensor, ParamState>();
  /** Defaults applied to groups that do not override them. */
  readonly defaults: Readonly<H>;

  constructor(params: ParamsInput<H>, defaults: H) {
    this.defaults = Object.freeze({ ...defaults });
    const groups = params.length > 0 && !(params[0] instanceof RefTensor) ? params : [{ params: params as RefTensor[] }];
    if (groups.length === 0 || (groups as Array<{ params: RefTensor[] }>).every((g) => g.params.length === 0)) {
      throw new RangeError(`${this.constructor.name}: got an empty parameter list; pass the model's parameters.`);
    }
    const seen = new Set<RefTensor>();
    this.paramGroups = (groups as Array<{ params: RefTensor[] } & Partial<H>>).map((g, gi) => {
      for (const p of g.params) {
        if (!(p instanceof RefTensor)) throw new TypeError(`${this.constructor.name}: group ${gi} holds a non-tensor parameter.`);
        if (seen.has(p)) throw new Error(`${this.constructor.name}: a parameter appears in more than one group (group ${gi}).`);
        seen.add(p);
      }
      return { ...defaults, ...stripUndefined(g), params: [...g.params] } as ParamGroup<H>;
    });
    for (const g of this.paramGroups) checkLr(this.constructor.name, g.lr);
  }

  /** Every parameter, group by group. */
  params(): RefTensor[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  /** Apply one update to every parameter that has a gradient. */
  step(): void {
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        if (p.grad === null) continue;
        let st = this.state.get(p);
        if (!st) {
          st = {};
          this.state.set(p, st);
        }
        this.update(p, valuesOf(p.grad), group, st);
      }
    }
  }

  /** Update one parameter in place given its gradient values. */
  protected abstract update(p: RefTensor, grad: Float64Array, group: ParamGroup<H>, state: ParamState): void;

  /** Clear gradients: drop them (`setToNone`, PyTorch's default) or fill them with zeros. */
  zeroGrad(setToNone = true): void {
    for (const p of this.params()) {
      if (p.grad === null) continue;
      if (setToNone) p.grad = null;
      else p.grad = zeros(p.shape, { dtype: p.dtype, device: p.device });
    }
  }

  /** Serializable copy of the optimizer state. */
  stateDict(): RefOptimizerStateDict {
    const index = new Map<RefTensor, number>();
    this.params().forEach((p, i) => index.set(p, i));
    const state: RefOptimizerStateDict['state'] = {};
    for (const [p, st] of this.state) {
      const entry: Record<string, HostTensor | number> = {};
      for (const [k, v] of Object.entries(st)) entry[k] = v instanceof RefTensor ? v.toHost() : v;
      state[String(index.get(p))] = entry;
    }
    const paramGroups = this.paramGroups.map((g) => {
      const out: Record<string, number | boolean | number[]> = {};
      for (const [k, v] of Object.entries(g)) {
        if (k === 'params' || v === undefined) continue;
        out[k] = v as number | boolean;
      }
      out.params = g.params.map((p) => index.get(p)!);
      return out;
    });
    return { state, paramGroups };
  }

  /** Restore a state from {@link RefOptimizer.stateDict}; group and parameter counts must match. */
  loadStateDict(sd: RefOptimizerStateDict): void {
    const name = this.constructor.name;
    if (!sd || typeof sd !== 'object' || !Array.isArray(sd.paramGroups) || typeof sd.state !== 'object') {
      throw new TypeError(`${name}.loadStateDict: expected { state, paramGroups } as produced by stateDict().`);
    }
    if (sd.paramGroups.length !== this.paramGroups.length) {
      throw new RangeError(
        `${name}.loadStateDict: the saved state has ${sd.paramGroups.length} parameter group(s) but the optimizer has ${this.paramGroups.length}.`,
      );
    }
    const params = this.params();
    sd.paramGroups.forEach((saved, gi) => {
      const ids = saved.params;
      const group = this.paramGroups[gi];
      if (!Array.isArray(ids) || ids.length !== group.params.length) {
        throw new RangeError(
          `${name}.loadStateDict: group ${gi} holds ${Array.isArray(ids) ? ids.length : 'no'} parameter(s) in the saved state but ${group.params.length} in the optimizer.`,
        );
      }
    });
    this.state.clear();
    for (const [key, entry] of Object.entries(sd.state)) {
      const p = params[Number(key)];
      if (!p) throw new RangeError(`${name}.loadStateDict: state for parameter index ${key}, but the optimizer has ${params.length} parameters.`);
      const st: ParamState = {};
      for (const [k, v] of Object.entries(entry)) {
        if (v instanceof HostTensor) {
          const t = fromHostTensor(v, p.device);
          st[k] = t.dtype === p.dtype ? t : t.to(p.dtype).detach();
        } else st[k] = v;
      }
      this.state.set(p, st);
    }
    sd.paramGroups.forEach((saved, gi) => {
      const group = this.paramGroups[gi] as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(saved)) if (k !== 'params') group[k] = v;
    });
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function checkLr(name: string, lr: unknown): void {
  if (typeof lr !== 'number' || !(lr >= 0)) throw new RangeError(`${name}: lr must be a number >= 0, got ${String(lr)}.`);
}

function stateTensor(state: ParamState, key: string): Float64Array | null {
  const t = state[key];
  return t instanceof RefTensor ? valuesOf(t) : null;
}

function storeState(state: ParamState, key: string, like: RefTensor, values: Float64Array): void {
  let t = state[key];
  if (!(t instanceof RefTensor)) {
    t = zeros(like.shape, { dtype: like.dtype, device: like.device });
    state[key] = t;
  }
  assignValues(t, values);
}

/** Hyperparameters of {@link SGD}. */
export interface SGDOptions extends HyperParams {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/**
 * Stochastic gradient descent with optional momentum, dampening, Nesterov
 * momentum and (coupled, L2) weight decay, as `torch.optim.SGD`:
 * `d = g + wd·p; buf = d (first step) or μ·buf + (1−τ)·d; d = nesterov ? d + μ·buf : buf; p −= lr·d`.
 */
export class SGD extends RefOptimizer<SGDOptions> {
  constructor(params: ParamsInput<SGDOptions>, options: SGDOptions) {
    const { lr, momentum = 0, dampening = 0, weightDecay = 0, nesterov = false } = options;
    if (nesterov && (momentum <= 0 || dampening !== 0)) {
      throw new RangeError('SGD: nesterov momentum requires momentum > 0 and dampening = 0.');
    }
    super(params, { lr, momentum, dampening, weightDecay, nesterov });
  }

  protected update(p: RefTensor, grad: Float64Array, group: ParamGroup<SGDOptions>, state: ParamState): void {
    const { lr, momentum = 0, dampening = 0, weightDecay = 0, nesterov = false } = group;
    const pv = valuesOf(p);
    const d = grad;
    if (weightDecay !== 0) for (let i = 0; i < d.length; i++) d[i] += weightDecay * pv[i];
    if (momentum !== 0) {
      let buf = stateTensor(state, 'momentumBuffer');
      if (buf === null) buf = d.slice();
      else for (let i = 0; i < d.length; i++) buf[i] = momentum * buf[i] + (1 - dampening) * d[i];
      storeState(state, 'momentumBuffer', p, buf);
      if (nesterov) for (let i = 0; i < d.length; i++) d[i] += momentum * buf[i];
      else d.set(buf);
    }
    for (let i = 0; i < pv.length; i++) pv[i] -= lr * d[i];
    assignValues(p, pv);
  }
}

/** Hyperparameters of {@link AdamW}. */
export interface AdamWOptions extends HyperParams {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

/**
 * Adam with decoupled weight decay, as `torch.optim.AdamW` (defaults lr 1e-3,
 * betas 0.9/0.999, eps 1e-8, weight decay 1e-2):
 * `p *= 1 − lr·wd; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
 * p −= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps)`.
 */
export class AdamW extends RefOptimizer<AdamWOptions> {
  constructor(params: ParamsInput<AdamWOptions>, options: Partial<AdamWOptions> = {}) {
    const { lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 1e-2 } = options;
    for (const [k, v] of [
      ['beta1', beta1],
      ['beta2', beta2],
    ] as const) {
      if (!(v >= 0 && v < 1)) throw new RangeError(`AdamW: ${k} must be in [0, 1), got ${v}.`);
    }
    super(params, { lr, beta1, beta2, eps, weightDecay });
  }

  protected update(p: RefTensor, grad: Float64Array, group: ParamGroup<AdamWOptions>, state: ParamState): void {
    const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 1e-2 } = group;
    const step = ((state.step as number | undefined) ?? 0) + 1;
    state.step = step;
    const pv = valuesOf(p);
    const m = stateTensor(state, 'expAvg') ?? new Float64Array(pv.length);
    const v = stateTensor(state, 'expAvgSq') ?? new Float64Array(pv.length);
    const bc1 = 1 - beta1 ** step;
    const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
    const stepSize = lr / bc1;
    for (let i = 0; i < pv.length; i++) {
      const g = grad[i];
      pv[i] *= 1 - lr * weightDecay;
      m[i] = beta1 * m[i] + (1 - beta1) * g;
      v[i] = beta2 * v[i] + (1 - beta2) * g * g;
      pv[i] -= (stepSize * m[i]) / (Math.sqrt(v[i]) / bc2Sqrt + eps);
    }
    storeState(state, 'expAvg', p, m);
    storeState(state, 'expAvgSq', p, v);
    assignValues(p, pv);
  }
}

/** Base class of reference learning-rate schedulers. */
export abstract class RefScheduler {
  /** Number of `step()` calls so far (0 after construction, as in PyTorch). */
  lastEpoch: number;
  /** Each group's learning rate when the scheduler was created. */
  readonly baseLrs: number[];
  private lastLr: number[] = [];

  constructor(
    readonly optimizer: RefOptimizer,
    lastEpoch = -1,
  ) {
    if (lastEpoch === -1) for (const g of optimizer.paramGroups) g.initialLr ??= g.lr;
    else {
      optimizer.paramGroups.forEach((g, i) => {
        if (g.initialLr === undefined) {
          throw new Error(`${this.constructor.name}: resuming (lastEpoch ${lastEpoch}) needs initialLr on param group ${i}.`);
        }
      });
    }
    this.baseLrs = optimizer.paramGroups.map((g) => g.initialLr!);
    this.lastEpoch = lastEpoch;
  }

  /** Learning rates for epoch `this.lastEpoch`. */
  protected abstract computeLrs(): number[];

  /** Advance one epoch/step and write the new learning rates into the optimizer. */
  step(): void {
    this.lastEpoch++;
    const lrs = this.computeLrs();
    this.optimizer.paramGroups.forEach((g, i) => (g.lr = lrs[i]));
    this.lastLr = lrs;
  }

  /** Learning rates set by the last `step()`. */
  getLastLr(): number[] {
    return [...this.lastLr];
  }

  /** Serializable state (functions such as lambdas are not saved, as in PyTorch). */
  stateDict(): Record<string, number | number[]> {
    return { lastEpoch: this.lastEpoch, baseLrs: [...this.baseLrs], lastLr: [...this.lastLr] };
  }

  /** Restore a state from {@link RefScheduler.stateDict}. */
  loadStateDict(state: Record<string, number | number[]>): void {
    if (typeof state.lastEpoch !== 'number') {
      throw new TypeError(`${this.constructor.name}.loadStateDict: missing number 'lastEpoch'.`);
    }
    this.lastEpoch = state.lastEpoch;
    if (Array.isArray(state.baseLrs)) this.baseLrs.splice(0, this.baseLrs.length, ...state.baseLrs);
    if (Array.isArray(state.lastLr)) this.lastLr = [...state.lastLr];
  }
}

/** `lr = baseLr · lrLambda(epoch)`, one lambda for all groups or one per group (`torch.optim.lr_scheduler.LambdaLR`). */
export class LambdaLR extends RefScheduler {
  private readonly lambdas: Array<(epoch: number) => number>;

  constructor(
    optimizer: RefOptimizer,
    lrLambda: ((epoch: number) => number) | Array<(epoch: number) => number>,
    lastEpoch = -1,
  ) {
    super(optimizer, lastEpoch);
    const n = optimizer.paramGroups.length;
    if (Array.isArray(lrLambda) && lrLambda.length !== n) {
      throw new RangeError(`LambdaLR: expected ${n} lr lambdas (one per param group), got ${lrLambda.length}.`);
    }
    this.lambdas = Array.isArray(lrLambda) ? [...lrLambda] : new Array(n).fill(lrLambda);
    // PyTorch takes an initial step in the constructor, so lastEpoch becomes 0 and lr = base · λ(0).
    this.step();
  }

  protected computeLrs(): number[] {
    return this.baseLrs.map((base, i) => base * this.lambdas[i](this.lastEpoch));
  }
}

/**
 * Dynamic loss scaling (`torch.amp.GradScaler`) over host floats: multiply
 * the loss by the scale, unscale gradients before the step, skip the step
 * when any gradient is inf/NaN and back off the scale, grow it after
 * `growthInterval` clean steps in a row.
 */
export class RefGradScaler implements GradScaler<RefTensor, RefOptimizer> {
  private scaleValue: number;
  private growthTracker = 0;
  private growthFactor: number;
  private backoffFactor: number;
  private growthInterval: number;
  private readonly enabled: boolean;
  /** Per-optimizer record of this iteration: unscaled yet, inf/NaN found, step taken. */
  private readonly perOptimizer = new Map<RefOptimizer, { foundInf: boolean; stepped: boolean }>();

  constructor(options: GradScalerOptions) {
    const { initScale, growthFactor, backoffFactor, growthInterval, enabled } = options;
    if (!(initScale > 0)) throw new RangeError(`GradScaler: initScale must be > 0, got ${initScale}.`);
    if (!(growthFactor > 1)) throw new RangeError(`GradScaler: growthFactor must be > 1, got ${growthFactor}.`);
    if (!(backoffFactor > 0 && backoffFactor < 1)) {
      throw new RangeError(`GradScaler: backoffFactor must be in (0, 1), got ${backoffFactor}.`);
    }
    if (!Number.isInteger(growthInterval) || growthInterval <= 0) {
      throw new RangeError(`GradScaler: growthInterval must be a positive integer, got ${growthInterval}.`);
    }
    this.scaleValue = initScale;
    this.growthFactor = growthFactor;
    this.backoffFactor = backoffFactor;
    this.growthInterval = growthInterval;
    this.enabled = enabled;
  }

  /** The loss times the current scale (the loss itself when disabled). */
  scale(loss: RefTensor): RefTensor {
    return this.enabled ? mulScalar(loss, this.scaleValue) : loss;
  }

  /** Divide the optimizer's gradients by the scale and record whether any is inf/NaN. Once per optimizer per iteration. */
  unscale(optimizer: RefOptimizer): void {
    if (!this.enabled) return;
    if (this.perOptimizer.has(optimizer)) {
      throw new Error('GradScaler.unscale: already called on this optimizer since the last update(); call update() after each step.');
    }
    const inv = 1 / this.scaleValue;
    let foundInf = false;
    for (const p of optimizer.params()) {
      if (p.grad === null) continue;
      const g = valuesOf(p.grad);
      for (let i = 0; i < g.length; i++) {
        g[i] *= inv;
        if (!Number.isFinite(g[i])) foundInf = true;
      }
      assignValues(p.grad, g);
    }
    this.perOptimizer.set(optimizer, { foundInf, stepped: false });
  }

  /** Unscale if not done yet, then step unless an inf/NaN gradient was found. Returns whether the optimizer stepped. */
  step(optimizer: RefOptimizer): boolean {
    if (!this.enabled) {
      optimizer.step();
      return true;
    }
    if (!this.perOptimizer.has(optimizer)) this.unscale(optimizer);
    const rec = this.perOptimizer.get(optimizer)!;
    if (rec.stepped) throw new Error('GradScaler.step: already stepped this optimizer since the last update().');
    if (rec.foundInf) return false;
    optimizer.step();
    rec.stepped = true;
    return true;
  }

  /** Back off after an inf/NaN, or count a clean step and grow every `growthInterval` clean steps. */
  update(): void {
    if (!this.enabled) return;
    if (this.perOptimizer.size === 0) {
      throw new Error('GradScaler.update: no inf checks were recorded for this iteration; call step(optimizer) before update().');
    }
    const foundInf = [...this.perOptimizer.values()].some((r) => r.foundInf);
    if (foundInf) {
      this.scaleValue *= this.backoffFactor;
      this.growthTracker = 0;
    } else {
      this.growthTracker++;
      if (this.growthTracker === this.growthInterval) {
        this.scaleValue *= this.growthFactor;
        this.growthTracker = 0;
      }
    }
    this.perOptimizer.clear();
  }

  /** Current scale (1 when disabled, as PyTorch reports). */
  getScale(): number {
    return this.enabled ? this.scaleValue : 1;
  }

  /** State with PyTorch's `GradScaler.state_dict()` keys, so checkpoints map one-to-one. Empty when disabled. */
  stateDict(): Record<string, number> {
    if (!this.enabled) return {};
    return {
      scale: this.scaleValue,
      growth_factor: this.growthFactor,
      backoff_factor: this.backoffFactor,
      growth_interval: this.growthInterval,
      _growth_tracker: this.growthTracker,
    };
  }

  /** Restore a state from {@link RefGradScaler.stateDict}. */
  loadStateDict(state: Record<string, number>): void {
    if (!this.enabled) return;
    if (typeof state.scale !== 'number') {
      throw new TypeError("GradScaler.loadStateDict: the state has no number 'scale'; it must come from stateDict() of an enabled scaler.");
    }
    this.scaleValue = state.scale;
    this.growthFactor = state.growth_factor ?? this.growthFactor;
    this.backoffFactor = state.backoff_factor ?? this.backoffFactor;
    this.growthInterval = state.growth_interval ?? this.growthInterval;
    this.growthTracker = state._growth_tracker ?? 0;
  }
}
