/**
 * Optimizers (`torch.optim`): SGD, Adam, AdamW with parameter groups. The update
 * over every parameter runs in one native call; hyper-parameters live in
 * `paramGroups` (plain objects schedulers and users may edit between steps).
 * @module
 */
import { native, type NativeOptimizer } from '../native.js';
import { Tensor } from '../tensor.js';

/** Hyper-parameters shared by the optimizers (unused ones are ignored). */
export interface OptimizerOptions {
  lr?: number;
  weightDecay?: number;
  maximize?: boolean;
}
export interface SGDOptions extends OptimizerOptions {
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
}
export interface AdamOptions extends OptimizerOptions {
  betas?: [number, number];
  eps?: number;
  amsgrad?: boolean;
}

/** Every hyper-parameter a group carries. */
export interface GroupHyper extends Required<OptimizerOptions> {
  momentum: number;
  dampening: number;
  nesterov: boolean;
  betas: [number, number];
  eps: number;
  amsgrad: boolean;
  /** lr when a scheduler first saw this group. */
  initialLr?: number;
}

/** One parameter group: its tensors and hyper-parameters (`lr` etc.). */
export interface ParamGroup extends GroupHyper {
  params: Tensor[];
  [key: string]: unknown;
}

/** Parameters, or groups of them with per-group options. */
export type ParamsInput = Iterable<Tensor> | Array<{ params: Iterable<Tensor> } & Partial<GroupHyper>>;

/** A serialisable optimizer state, laid out as PyTorch's `optimizer.state_dict()`. */
export interface OptimizerStateDict {
  state: Record<number, Record<string, Tensor | number>>;
  param_groups: Array<Record<string, unknown> & { params: number[] }>;
}

const HYPER = 9;
const BUFFER_NAMES: Record<string, string[]> = {
  sgd: ['momentum_buffer'],
  adam: ['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'],
  adamw: ['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'],
};
// camelCase option <-> PyTorch state_dict key
/** Group keys each optimizer saves, as torch.optim does (SGD has no betas, Adam no momentum). */
const OWN_KEYS: Record<string, Set<string>> = {
  sgd: new Set(['lr', 'weight_decay', 'maximize', 'momentum', 'dampening', 'nesterov', 'initial_lr']),
  adam: new Set(['lr', 'weight_decay', 'maximize', 'betas', 'eps', 'amsgrad', 'initial_lr']),
  adamw: new Set(['lr', 'weight_decay', 'maximize', 'betas', 'eps', 'amsgrad', 'initial_lr']),
};
const KEYS: Array<[keyof ParamGroup, string]> = [
  ['lr', 'lr'],
  ['weightDecay', 'weight_decay'],
  ['maximize', 'maximize'],
  ['momentum', 'momentum'],
  ['dampening', 'dampening'],
  ['nesterov', 'nesterov'],
  ['betas', 'betas'],
  ['eps', 'eps'],
  ['amsgrad', 'amsgrad'],
  ['initialLr', 'initial_lr'],
];

/** Base class: parameter groups, zeroGrad, stateDict, and the native step. */
export abstract class Optimizer {
  readonly paramGroups: ParamGroup[] = [];
  readonly defaults: ParamGroup;
  /** @internal */ readonly _native: NativeOptimizer;
  private hyper = new Float64Array(0);

  protected constructor(
    readonly kind: 'sgd' | 'adam' | 'adamw',
    params: ParamsInput,
    defaults: GroupHyper,
  ) {
    this.defaults = { ...defaults, params: [] };
    this._native = new native.NativeOptimizer(kind);
    const list = [...(params as Iterable<unknown>)];
    if (list.length === 0) throw new Error(`${this.constructor.name}: got an empty parameter list; pass model.parameters()`);
    if (list[0] instanceof Tensor) this.addParamGroup({ params: list as Tensor[] });
    else for (const g of list as Array<{ params: Iterable<Tensor> }>) this.addParamGroup(g);
  }

  /** Add a group; missing options come from the defaults. */
  addParamGroup(group: { params: Iterable<Tensor> } & Partial<GroupHyper>): void {
    const params = [...group.params];
    for (const p of params) {
      if (!(p instanceof Tensor)) throw new TypeError(`${this.constructor.name}: parameters must be Tensors`);
      if (!p.isLeaf) throw new Error(`${this.constructor.name}: can't optimize a non-leaf Tensor`);
    }
    const seen = new Set(this.paramGroups.flatMap((g) => g.params));
    if (params.some((p) => seen.has(p))) throw new Error(`${this.constructor.name}: some parameters appear in more than one parameter group`);
    const g = { ...this.defaults, ...group, params } as ParamGroup;
    this.paramGroups.push(g);
    this._native.addGroup(params.map((p) => p._h));
    this.hyper = new Float64Array(this.paramGroups.length * HYPER);
  }

  /** Update every parameter that has a gradient (one native call). */
  step(): void {
    const hy = this.hyper;
    this.paramGroups.forEach((g, i) => {
      const o = i * HYPER;
      hy[o] = g.lr;
      hy[o + 1] = this.kind === 'sgd' ? g.momentum : g.betas[0];
      hy[o + 2] = this.kind === 'sgd' ? 0 : g.betas[1];
      hy[o + 3] = g.eps;
      hy[o + 4] = g.weightDecay;
      hy[o + 5] = g.nesterov ? 1 : 0;
      hy[o + 6] = g.maximize ? 1 : 0;
      hy[o + 7] = g.amsgrad ? 1 : 0;
      hy[o + 8] = g.dampening;
    });
    this._native.step(hy);
  }

  /** Clear gradients (`setToNone`, the default, frees them; false zeroes them in place). */
  zeroGrad(setToNone = true): void {
    this._native.zeroGrad(setToNone);
  }

  /** State as PyTorch lays it out: per-parameter buffers by index, and the groups' options. */
  stateDict(): OptimizerStateDict {
    const state: OptimizerStateDict['state'] = {};
    const groups: OptimizerStateDict['param_groups'] = [];
    let index = 0;
    this.paramGroups.forEach((g, gi) => {
      const ids: number[] = [];
      g.params.forEach((_, pi) => {
        const s = this._native.getState(gi, pi);
        const entry: Record<string, Tensor | number> = {};
        s.buffers.forEach((b, k) => {
          if (b) entry[BUFFER_NAMES[this.kind][k]] = new Tensor(b);
        });
        if (Object.keys(entry).length || s.step > 0) {
          entry.step = s.step;
          state[index] = entry;
        }
        ids.push(index++);
      });
      const out: Record<string, unknown> & { params: number[] } = { params: ids };
      for (const [camel, snake] of KEYS) if (g[camel] !== undefined && OWN_KEYS[this.kind].has(snake)) out[snake] = g[camel];
      groups.push(out);
    });
    return { state, param_groups: groups };
  }

  /** Restore a {@link stateDict} (same parameter layout). */
  loadStateDict(sd: OptimizerStateDict): void {
    if (sd.param_groups.length !== this.paramGroups.length) {
      throw new Error(`loadStateDict: the state has ${sd.param_groups.length} parameter groups, this optimizer ${this.paramGroups.length}`);
    }
    sd.param_groups.forEach((sg, gi) => {
      const g = this.paramGroups[gi];
      if (sg.params.length !== g.params.length) {
        throw new Error(`loadStateDict: group ${gi} has ${sg.params.length} parameters in the state, ${g.params.length} in this optimizer`);
      }
      for (const [camel, snake] of KEYS) if (snake in sg) (g as Record<string, unknown>)[camel] = sg[snake];
      sg.params.forEach((id, pi) => {
        const s = sd.state[id];
        const names = BUFFER_NAMES[this.kind];
        const bufs = [0, 1, 2].map((k) => {
          const v = s?.[names[k] ?? ''];
          return v instanceof Tensor ? v._h : null;
        });
        const step = s?.step;
        this._native.setState(gi, pi, typeof step === 'number' ? step : step instanceof Tensor ? step.item() : 0, bufs);
      });
    });
  }

  /**
   * Replace every parameter by `replace(param)`, keeping the groups, their order and
   * hyper-parameters (a sharded strategy points the optimizer at shard stand-ins
   * this way). Only before the first step: throws once the optimizer has state.
   */
  replaceParams(replace: (param: Tensor) => Tensor): void {
    if (this._native.hasState()) {
      throw new Error(`${this.constructor.name}.replaceParams: the optimizer already has state (it stepped or loaded a state dict); replace parameters before the first step.`);
    }
    const groups = this.paramGroups.map((g) =>
      g.params.map((p) => {
        const q = replace(p);
        if (!(q instanceof Tensor)) throw new TypeError(`${this.constructor.name}.replaceParams: replace() must return a Tensor`);
        if (!q.isLeaf) throw new Error(`${this.constructor.name}.replaceParams: can't optimize a non-leaf Tensor`);
        return q;
      }),
    );
    const seen = new Set<Tensor>();
    for (const q of groups.flat()) {
      if (seen.has(q)) throw new Error(`${this.constructor.name}.replaceParams: replace() returned the same tensor for two parameters`);
      seen.add(q);
    }
    this._native.replaceGroups(groups.map((ps) => ps.map((p) => p._h)));
    this.paramGroups.forEach((g, i) => {
      g.params = groups[i];
    });
  }

  /** Move state buffers next to their parameters (after moving the model). */
  moveState(): void {
    this._native.moveState();
  }
}

/** Stochastic gradient descent with momentum, dampening, Nesterov and weight decay. */
export class SGD extends Optimizer {
  constructor(params: ParamsInput, options: SGDOptions = {}) {
    const o = { lr: 1e-3, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, maximize: false, ...options };
    if (o.nesterov && (o.momentum <= 0 || o.dampening !== 0)) throw new Error('SGD: nesterov momentum requires a momentum and zero dampening');
    super('sgd', params, { ...o, betas: [0, 0], eps: 0, amsgrad: false });
  }
}

/** Adam (L2 weight decay added to the gradient). */
export class Adam extends Optimizer {
  constructor(params: ParamsInput, options: AdamOptions = {}) {
    super('adam', params, adamDefaults(options, 0));
  }
}

/** AdamW (decoupled weight decay, default 0.01). */
export class AdamW extends Optimizer {
  constructor(params: ParamsInput, options: AdamOptions = {}) {
    super('adamw', params, adamDefaults(options, 1e-2));
  }
}

function adamDefaults(o: AdamOptions, wd: number): GroupHyper {
  const d = { lr: 1e-3, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: wd, amsgrad: false, maximize: false, ...o };
  if (!(d.lr >= 0)) throw new Error(`Invalid learning rate: ${d.lr}`);
  if (!(d.betas[0] >= 0 && d.betas[0] < 1)) throw new Error(`Invalid beta parameter at index 0: ${d.betas[0]}`);
  if (!(d.betas[1] >= 0 && d.betas[1] < 1)) throw new Error(`Invalid beta parameter at index 1: ${d.betas[1]}`);
  return { ...d, momentum: 0, dampening: 0, nesterov: false };
}
