/**
 * The FSDP distribution strategy: wraps each model into {@link FlatUnit}s
 * (one per module the auto-wrap policy picks, plus the root) and drives them
 * from forward hooks, tensor gradient hooks and gradient-ready hooks, as
 * PyTorch's FullyShardedDataParallel does:
 *
 * - before a unit's forward: gather its parameters (and start gathering the
 *   next unit's, recorded from the previous forward);
 * - after it: release them again (FULL_SHARD / HYBRID_SHARD), and hook the
 *   outputs so that backward gathers them again before the unit's backward
 *   (prefetching the unit that comes next in backward);
 * - once every parameter of a unit has its gradient: reduce-scatter the
 *   flattened gradients (in the background) and release the parameters;
 * - when backward ends: wait for the reductions, average, hand the shard
 *   gradients to the optimizer's leaves.
 *
 * Collectives are waited for synchronously (Work.waitSync) because hooks run
 * inside forward and backward, which cannot await; other ranks run in other
 * processes, so blocking this thread is what a CUDA stream wait does too.
 * @module
 */
import {
  requireCapability,
  requireCapabilityMethod,
  type Backend,
  type DistributionStrategy,
  type HostTensor,
  type ModelCapability,
  type ProcessGroup,
  type ShardingCapability,
  type StateDictType,
  type StrategyContext,
  type CheckpointParticipant,
} from '@accelerate/core';
import { FlatUnit, waitNow, type UnitComm } from './flat-param.js';
import type { FsdpPlan } from './options.js';
import { planUnits } from './wrap-policy.js';
import { fsdpModelCheckpoint, fsdpOptimizerCheckpoint } from './checkpoint.js';

/** A wrapped model's units and per-step state. */
export interface FsdpModel<T, M> {
  readonly model: M;
  /** Post-order: nested units before their ancestors; the root last. */
  readonly units: FlatUnit<T, M>[];
  readonly root: FlatUnit<T, M>;
  /** Parameters of ignored modules: left whole, never synchronised. */
  readonly ignored: Array<{ name: string; param: T }>;
  /** Units in the order their forward started last time (the prefetch order). */
  forwardOrder: FlatUnit<T, M>[];
  recording: FlatUnit<T, M>[];
  syncGradients: boolean;
  forceSync: boolean;
  backwardActive: boolean;
  /** The unit whose gradient reduction was started last and not yet finished. */
  inFlight: FlatUnit<T, M> | undefined;
  /**
   * Every parameter under every name it has (a tied parameter under each) and
   * every persistent buffer, in state-dict order, as the module objects hold
   * them (not detached copies, so parameters are recognised by identity).
   */
  tensors(): { params: Array<{ name: string; param: T }>; buffers: Array<{ name: string; tensor: T }> };
}

/** The world's layout for one plan: shard groups of S ranks, replicated R times. */
interface Layout<T> {
  comm: UnitComm<T>;
  /** Index of this rank's replica (0 for the ranks whose shards a sharded checkpoint writes). */
  replicaIndex: number;
}

/** The strategy object, with what tests and checkpoints reach. */
export interface FsdpStrategy<T = unknown, M = unknown> extends DistributionStrategy<M, T> {
  readonly plan: FsdpPlan;
  /** The wrapped state of a model this strategy wrapped. */
  stateOf(model: M): FsdpModel<T, M>;
  /** Bytes this rank holds for parameters (shard, plus the gathered buffer while gathered) and gradient shards (for reports and tests). */
  residentBytes(model: M): { parameters: number; gradients: number };
}

/** Build the FSDP strategy for a resolved plan. */
export function createFsdpStrategy<T = unknown, M = unknown>(plan: FsdpPlan): FsdpStrategy<T, M> {
  let backend!: Backend<T, M, any, any>;
  let sharding!: ShardingCapability<T, M>;
  let models!: ModelCapability<T, M>;
  let layout!: Layout<T>;
  let context!: StrategyContext<T>;
  const wrapped = new Map<M, FsdpModel<T, M>>();

  const stateOf = (model: M): FsdpModel<T, M> => {
    const s = wrapped.get(model);
    if (!s) throw new Error('FSDP: this model was not prepared by this Accelerator (pass it to accelerator.prepare first).');
    return s;
  };

  /** Meta parameters given memory by sync_module_states, and the parameter objects that replaced them. */
  const replaced = new Map<T, T>();
  const leafOf = (given: T): T | undefined => {
    const param = replaced.get(given) ?? given;
    for (const s of wrapped.values()) for (const u of s.units) {
      const leaf = u.leafOf.get(param);
      if (leaf !== undefined) return leaf;
    }
    return undefined;
  };

  /** Gradient hooks on every tensor a unit's forward returned (nested arrays and objects walked). */
  const hookOutputs = (output: unknown, fn: () => void, seen = new Set<unknown>()): void => {
    if (output === null || typeof output !== 'object' || seen.has(output)) return;
    seen.add(output);
    if (backend.isTensor(output)) {
      sharding.addTensorGradHook(output, fn); // lives as long as the output tensor: nothing to remove
      return;
    }
    const values = Array.isArray(output) ? output : Object.values(output as Record<string, unknown>);
    for (const v of values) hookOutputs(v, fn, seen);
  };

  const preForward = (state: FsdpModel<T, M>, unit: FlatUnit<T, M>) => {
    if (unit.inBackward) return; // recomputation of a checkpointed unit inside backward: gathered already
    if (unit === state.root) state.recording = [];
    state.recording.push(unit);
    unit.unshard();
    if (plan.forwardPrefetch || plan.version === 2) {
      const order = state.forwardOrder;
      const next = order[order.indexOf(unit) + 1];
      if (next && next !== unit) next.startGather();
    }
  };

  const postForward = (state: FsdpModel<T, M>, unit: FlatUnit<T, M>, output: unknown) => {
    if (unit.inBackward) return;
    const training = sharding.isGradEnabled();
    if (unit === state.root) {
      state.forwardOrder = state.recording;
      if (!training) for (const u of state.units) u.reshard(); // evaluation: nothing stays gathered
    } else if (plan.reshardAfterForward || !training) unit.reshard();
    if (training) hookOutputs(output, () => preBackward(state, unit));
  };

  const preBackward = (state: FsdpModel<T, M>, unit: FlatUnit<T, M>) => {
    if (!state.backwardActive) {
      state.backwardActive = true;
      sharding.queueBackwardCallback(() => finishBackward(state));
    }
    if (unit.inBackward) return;
    unit.inBackward = true;
    unit.unshard();
    unit.prepareGradients();
    if (plan.backwardPrefetch === 'BACKWARD_PRE' || plan.version === 2) prefetchForBackward(state, unit); // FSDP2 always prefetches
  };

  /** Start gathering the unit whose backward comes after `unit`'s (the one before it in forward). */
  const prefetchForBackward = (state: FsdpModel<T, M>, unit: FlatUnit<T, M>) => {
    const order = state.forwardOrder;
    const i = order.indexOf(unit);
    for (let j = i - 1; j >= 0; j--) {
      if (!order[j].inBackward) {
        order[j].startGather();
        return;
      }
    }
  };

  const gradientsReady = (state: FsdpModel<T, M>, unit: FlatUnit<T, M>) => {
    // Every use of the unit's parameters is behind us (each parameter's gradient is complete),
    // the root's included: release them before the reduction allocates its buffers.
    unit.reshard();
    if (state.syncGradients || state.forceSync) {
      // One reduction in flight at a time: its buffers go before the next unit's are made.
      if (state.inFlight && state.inFlight !== unit) state.inFlight.finishReduce();
      unit.startReduce();
      state.inFlight = unit;
    }
    if (plan.backwardPrefetch === 'BACKWARD_POST') prefetchForBackward(state, unit);
  };

  const finishBackward = (state: FsdpModel<T, M>) => {
    const sync = state.syncGradients || state.forceSync;
    for (const u of state.units) {
      if (sync) {
        u.startReduce(); // units whose parameters got no gradient in this backward
        u.finishReduce();
      }
      u.reshard();
      u.ready.clear();
      u.inBackward = false;
      u.reduced = false;
    }
    state.backwardActive = false;
    state.forceSync = false;
    state.inFlight = undefined;
  };

  const describeGroup = (g: ProcessGroup<T> | undefined) => (g ? `${g.size} ranks` : 'none');

  const strategy: FsdpStrategy<T, M> = {
    name: 'FSDP',
    distributedType: 'FSDP',
    requires: ['models', 'autograd', 'optimizers', 'sharding'],
    plan,
    stateOf,

    async setup(ctx) {
      context = ctx;
      backend = ctx.backend as Backend<T, M, any, any>;
      sharding = requireCapability(backend, 'sharding', 'FSDP (@accelerate/plugin-fsdp)') as ShardingCapability<T, M>;
      models = requireCapabilityMethod(backend, 'models', 'addForwardHooks', 'FSDP (@accelerate/plugin-fsdp)') as ModelCapability<T, M>;
      requireCapabilityMethod(backend, 'models', 'addGradientReadyHook', 'FSDP (@accelerate/plugin-fsdp)');
      requireCapabilityMethod(backend, 'optimizers', 'replaceParams', 'FSDP (@accelerate/plugin-fsdp)');
      if (!backend.emptyTensor || !backend.cast) {
        throw new Error(`FSDP needs the "${backend.name}" backend's emptyTensor() and cast() tensor operations, which it does not provide.`);
      }
      if (plan.activationCheckpointing && !sharding.checkpointModule) {
        throw new Error(
          `fsdp_activation_checkpointing is true, but the "${backend.name}" backend cannot checkpoint activations (sharding.checkpointModule). Turn activation checkpointing off, or use @accelerate/backend-libtorch.`,
        );
      }
      for (const w of plan.warnings) ctx.logger.warning(w);
      layout = await buildLayout(ctx, plan);
      ctx.logger.info(
        `FSDP ${plan.shardingStrategy}: parameters sharded over ${layout.comm.shardSize} rank(s), replicated ${ctx.numProcesses / layout.comm.shardSize} time(s)` +
          (layout.comm.shardGroup?.implementations ? ` (collectives: ${JSON.stringify(layout.comm.shardGroup.implementations)})` : ''),
      );
      ctx.logger.debug(`shard group ${describeGroup(layout.comm.shardGroup)}, replica group ${describeGroup(layout.comm.replicaGroup)}`);
    },

    async wrapModel(model, ctx) {
      if (wrapped.has(model)) return model;
      for (const { name, param } of walkTensors(model).params) {
        if (backend.device(param) === 'meta' && !(plan.syncModuleStates && ctx.group)) {
          throw new Error(
            `Parameter "${name}" is on the meta device (created with initOnDevice('meta')); FSDP fills such parameters only from rank 0: set fsdp_sync_module_states (syncModuleStates: true), run several processes, and build the model with its weights on rank 0.`,
          );
        }
      }
      if (plan.syncModuleStates && ctx.group) await syncFromRank0(model, ctx);
      const { units: planned, ignored } = planUnits<M, T>(model, models, plan.autoWrap, plan.isIgnored, { numel: (t) => sharding.numel(t) });
      for (const u of planned) {
        for (const { name, param } of u.params) {
          const dt = backend.dtype(param);
          if (dt !== 'float32') {
            throw new Error(
              `FSDP keeps float32 master weights, but parameter "${name}" is ${dt}. Load the model in float32 and choose the compute dtype with fsdp({ mixedPrecisionPolicy: 'bf16' }) (fsdp_config.mixed_precision_policy).`,
            );
          }
        }
      }
      const compute = plan.mixedPrecision?.paramDtype ?? 'float32';
      const reduce = plan.mixedPrecision?.reduceDtype ?? compute;
      const shardDevice = plan.cpuOffload ? 'cpu' : ctx.device;
      const units = planned.map(
        (u) =>
          new FlatUnit<T, M>(u.name, u.module, u.params, backend, sharding, layout.comm, { compute, reduce }, shardDevice, ctx.device),
      );
      const state: FsdpModel<T, M> = {
        model,
        units,
        root: units[units.length - 1],
        ignored,
        forwardOrder: [],
        recording: [],
        syncGradients: true,
        forceSync: false,
        backwardActive: false,
        inFlight: undefined,
        tensors: () => walkTensors(model),
      };
      for (const unit of units) {
        unit.own(
          models.addForwardHooks!(unit.module, {
            pre: (args) => {
              preForward(state, unit);
              if (unit === state.root && plan.mixedPrecision) return castFloats(args, compute) as unknown[];
              return undefined;
            },
            post: (_args, output) => {
              postForward(state, unit, output);
              // FSDP2's output_dtype: the root's floating outputs leave in that dtype.
              const outputDtype = plan.mixedPrecision?.outputDtype;
              return unit === state.root && outputDtype ? castFloats(output, outputDtype) : output;
            },
          }),
        );
        const trainable = unit.slots.filter((s) => s.requiresGrad);
        for (const slot of trainable) {
          unit.own(
            models.addGradientReadyHook!(slot.param, () => {
              unit.ready.add(slot.param);
              if (unit.ready.size === trainable.length) gradientsReady(state, unit);
            }),
          );
        }
        if (plan.activationCheckpointing && unit !== state.root) unit.own(sharding.checkpointModule!(unit.module));
      }
      wrapped.set(model, state);
      const total = units.reduce((n, u) => n + u.numel, 0);
      ctx.logger.info(`wrapped ${units.length} unit(s), ${total} parameters; this rank keeps ${units.reduce((n, u) => n + u.chunk, 0)} of them`);
      return model;
    },

    unwrapModel: (model) => model,

    async prepareOptimizer(optimizer, _models, ctx) {
      if (wrapped.size === 0) {
        throw new Error(
          'FSDP: the optimizer was prepared before any model. Pass the model to accelerator.prepare() before or together with the optimizer (prepare(model, optimizer)), so the optimizer can be pointed at the parameter shards.',
        );
      }
      const optimizers = requireCapabilityMethod(backend, 'optimizers', 'replaceParams', 'FSDP (@accelerate/plugin-fsdp)');
      let replaced = 0;
      optimizers.replaceParams!(optimizer, (p: T) => {
        const leaf = leafOf(p);
        if (leaf === undefined) return p;
        replaced++;
        return leaf;
      });
      if (replaced === 0) {
        ctx.logger.warning('FSDP: the optimizer holds none of the prepared models\' parameters; it will not train them.');
      }
      return optimizer;
    },

    setGradientSync(model, enabled) {
      stateOf(model).syncGradients = enabled;
    },

    triggerSyncInBackward(model) {
      stateOf(model).forceSync = true;
    },

    clipGradNorm(params, maxNorm, normType) {
      return clipShardedGradNorm(params, maxNorm, normType);
    },

    async stateDict(model, options) {
      return stateDictOf(stateOf(model), options.type, options.rank0Only ?? false);
    },

    async loadStateDict(model, state, options) {
      loadStateDictInto(stateOf(model), state, options.type, options.strict ?? true);
    },

    modelCheckpoint(modelsOf, ctx) {
      return fsdpModelCheckpoint(
        {
          plan,
          models: () => modelsOf().map((m) => stateOf(m)),
          stateDict: (s, type) => stateDictOf(s, type, type === 'full'),
          load: (s, state, type) => loadStateDictInto(s, state, type, true),
          replicaIndex: () => layout.replicaIndex,
          backend,
          sharding,
        },
        ctx,
      ) as CheckpointParticipant;
    },

    optimizerCheckpoint(optimizersOf, ctx) {
      return fsdpOptimizerCheckpoint(
        {
          optimizers: optimizersOf,
          slotOfLeaf: (leaf) => {
            for (const s of wrapped.values()) for (const u of s.units) {
              const i = u.leaves.indexOf(leaf);
              if (i >= 0) return u.slots[i];
            }
            return undefined;
          },
          nameOfParam: (p) => {
            for (const s of wrapped.values()) for (const ig of s.ignored) if (ig.param === p) return ig.name;
            return undefined;
          },
          replicaIndex: () => layout.replicaIndex,
          backend,
        },
        ctx,
      );
    },

    residentBytes(model) {
      const s = stateOf(model);
      let parameters = 0;
      let gradients = 0;
      for (const u of s.units) {
        parameters += u.chunk * 4 + (u.unsharded && u.full !== u.shard ? sharding.numel(u.full) * bytesOf(backend.dtype(u.full)) : 0);
        gradients += u.chunk * 4;
      }
      return { parameters, gradients };
    },

    async teardown() {
      for (const s of wrapped.values()) for (const u of s.units) u.teardown();
      wrapped.clear();
    },
  };

  /** Float tensors among a forward's arguments cast to the compute dtype (FSDP's mixed precision casts the root's inputs). */
  function castFloats(value: unknown, dtype: 'float32' | 'bfloat16' | 'float16' | string): unknown {
    if (backend.isTensor(value)) {
      const dt = backend.dtype(value);
      return /^(float|bfloat)/.test(dt) && dt !== dtype ? backend.cast!(value, dtype as never) : value;
    }
    if (Array.isArray(value)) return value.map((v) => castFloats(v, dtype));
    return value;
  }

  /** Parameters (under every name) and persistent buffers of `model`, by walking its module tree. */
  function walkTensors(model: M): ReturnType<FsdpModel<T, M>['tensors']> {
    const params: Array<{ name: string; param: T }> = [];
    const buffers: Array<{ name: string; tensor: T }> = [];
    const seen = new Set<M>();
    const visit = (m: M, prefix: string) => {
      if (seen.has(m)) return;
      seen.add(m);
      const own = models.ownTensors!(m);
      for (const [n, t] of own.parameters) params.push({ name: prefix + n, param: t });
      for (const b of own.buffers) if (b.persistent) buffers.push({ name: prefix + b.name, tensor: b.tensor });
      for (const [n, child] of models.namedChildren!(m)) visit(child, `${prefix}${n}.`);
    };
    visit(model, '');
    return { params, buffers };
  }

  function stateDictOf(s: FsdpModel<T, M>, type: StateDictType, rank0Only: boolean): Record<string, HostTensor> {
    const out: Record<string, HostTensor> = {};
    const byParam = new Map<T, HostTensor>();
    const keep = type === 'sharded' || !rank0Only || context.processIndex === 0;
    for (const u of s.units) {
      if (type === 'full') {
        const flat = u.gatherFullFloat32(); // a collective: every rank gathers
        if (keep) {
          for (const slot of u.slots) {
            const view = sharding.view(flat, slot.offset, slot.shape);
            byParam.set(slot.param, backend.toHost(view));
            backend.dispose?.(view);
          }
        }
        if (flat !== u.shard) backend.dispose?.(flat);
      } else {
        u.slots.forEach((slot, i) => byParam.set(slot.param, backend.toHost(u.leaves[i])));
      }
    }
    if (!keep) return {};
    const { params, buffers } = s.tensors();
    for (const { name, param } of params) out[name] = byParam.get(param) ?? backend.toHost(param); // ignored parameters are whole
    for (const { name, tensor } of buffers) out[name] = backend.toHost(tensor);
    return out;
  }

  function loadStateDictInto(s: FsdpModel<T, M>, state: Record<string, HostTensor>, type: StateDictType, strict: boolean): void {
    if (type === 'sharded') {
      for (const u of s.units) {
        u.slots.forEach((slot, i) => {
          const h = state[slot.name];
          if (!h) {
            if (strict) throw new Error(`FSDP loadStateDict: the sharded state has no "${slot.name}".`);
            return;
          }
          sharding.copy(u.leaves[i], backend.fromHost(h, backend.device(u.shard)));
        });
      }
    } else {
      const missing: string[] = [];
      for (const u of s.units) {
        const flat = backend.emptyTensor!([u.chunk * u.comm.shardSize], 'float32', backend.device(u.shard));
        sharding.zero(flat);
        for (const slot of u.slots) {
          const h = state[slot.name];
          if (!h) {
            missing.push(slot.name);
            const current = u.gatherFullFloat32();
            const src = sharding.view(current, slot.offset, slot.shape);
            u.copyAt(flat, slot.offset, slot.shape, src);
            backend.dispose?.(src);
            if (current !== u.shard) backend.dispose?.(current);
            continue;
          }
          const shape = h.shape.join('x');
          if (shape !== slot.shape.join('x')) {
            throw new Error(`FSDP loadStateDict: "${slot.name}" has shape [${h.shape.join(', ')}] in the state dict but [${slot.shape.join(', ')}] in the model.`);
          }
          const value = backend.fromHost(h, backend.device(flat));
          u.copyAt(flat, slot.offset, slot.shape, value);
          backend.dispose?.(value);
        }
        if (strict && missing.length > 0) throw new Error(`FSDP loadStateDict: missing ${missing.join(', ')} (pass strict: false to load the rest).`);
        u.loadFullFloat32(flat);
        backend.dispose?.(flat);
      }
    }
    // Buffers and ignored parameters: whole on every rank, loaded as usual.
    const rest: Record<string, HostTensor> = {};
    const sharded = new Set(s.units.flatMap((u) => u.slots.map((x) => x.param)));
    const skip = new Set(s.tensors().params.filter((p) => sharded.has(p.param)).map((p) => p.name)); // every name of a sharded parameter
    for (const [name, h] of Object.entries(state)) if (!skip.has(name)) rest[name] = h;
    if (Object.keys(rest).length > 0) models.loadStateDict(s.model, rest, { strict: false });
  }

  function clipShardedGradNorm(params: T[], maxNorm: number, normType: number): number {
    const p = normType;
    const inf = !Number.isFinite(p);
    let replicated = 0; // ignored (whole, unsynchronised) parameters' contribution, counted once per world
    const units = new Set<FlatUnit<T, M>>();
    for (const param of params) {
      if (leafOf(param) !== undefined) continue; // sharded: counted through its unit's gradient shard
      const g = sharding.grad(param);
      if (g === null) continue;
      const v = normOf(g, p);
      backend.dispose?.(g);
      replicated = inf ? Math.max(replicated, v) : replicated + v ** p;
    }
    // Units holding some of `params` whose shard gradients are current (none between a
    // non-synchronising micro-step's backward and the synchronising one).
    for (const s of wrapped.values()) {
      for (const u of s.units) {
        const mine = u.leaves.some((l) => params.includes(l) || params.some((q) => u.leafOf.get(q) === l));
        if (mine && u.leaves.some((l) => hasGrad(l))) units.add(u);
      }
    }
    let local = 0;
    for (const u of units) {
      const v = normOf(u.gradShard, p);
      local = inf ? Math.max(local, v) : local + v ** p;
    }
    const world = context.numProcesses;
    const R = world / layout.comm.shardSize;
    // Shards of different replicas are equal: count them once.
    const buf = new Float64Array([inf ? local : local / R + replicated / world]);
    if (context.group) waitNow(context.group.allReduce(buf, inf ? 'max' : 'sum'), 'all-reduce the gradient norm');
    const total = inf ? Math.max(buf[0], replicated) : buf[0] ** (1 / p);
    const coef = maxNorm / (total + 1e-6);
    if (coef < 1) {
      for (const u of units) sharding.copy(u.gradShard, backend.mulScalar(u.gradShard, coef));
      for (const param of params) {
        if (leafOf(param) !== undefined) continue;
        const g = sharding.grad(param);
        if (g !== null) sharding.copy(g, backend.mulScalar(g, coef));
      }
    }
    return total;
  }

  function hasGrad(t: T): boolean {
    const g = sharding.grad(t);
    if (g === null) return false;
    backend.dispose?.(g);
    return true;
  }

  function normOf(t: T, p: number): number {
    const h = backend.toHost(backend.cast!(t, 'float32'));
    const d = h.data as Float32Array;
    if (!Number.isFinite(p)) {
      let m = 0;
      for (let i = 0; i < d.length; i++) m = Math.max(m, Math.abs(d[i]));
      return m;
    }
    let sum = 0;
    if (p === 2) for (let i = 0; i < d.length; i++) sum += d[i] * d[i];
    else for (let i = 0; i < d.length; i++) sum += Math.abs(d[i]) ** p;
    return sum ** (1 / p);
  }

  /**
   * sync_module_states: every parameter and buffer takes rank 0's values. A
   * tensor on the meta device (cpu_ram_efficient_loading: ranks other than 0
   * built the model without memory) is first given memory on this device;
   * the module then holds a new parameter object, remembered in `replaced`
   * so an optimizer built over the meta parameters still finds its shard.
   */
  async function syncFromRank0(model: M, ctx: StrategyContext<T>): Promise<void> {
    const setModuleTensor = models.setModuleTensor;
    const visit = async (m: M, prefix: string, seen: Set<M>) => {
      if (seen.has(m)) return;
      seen.add(m);
      const own = models.ownTensors!(m);
      const tensors = [...own.parameters.map(([n, t]) => ({ n, t })), ...own.buffers.map((b) => ({ n: b.name, t: b.tensor }))];
      for (const { n, t } of tensors) {
        let target = t;
        if (backend.device(t) === 'meta') {
          if (!setModuleTensor) throw new Error(`FSDP cannot give the meta tensor "${prefix}${n}" memory: the "${backend.name}" backend has no models.setModuleTensor().`);
          target = backend.emptyTensor!(backend.shape(t), backend.dtype(t), ctx.device);
          setModuleTensor(m, n, target);
          const now = models.ownTensors!(m).parameters.find(([pn]) => pn === n)?.[1];
          if (now !== undefined) replaced.set(t, now);
          target = now ?? target;
        }
        try {
          await ctx.group!.broadcast(target, 0).wait();
        } catch (e) {
          throw new Error(`FSDP sync_module_states: broadcasting "${prefix}${n}" from rank 0 failed: ${(e as Error).message}`);
        }
      }
      for (const [n, child] of models.namedChildren!(m)) await visit(child, `${prefix}${n}.`, seen);
    };
    await visit(model, '', new Set());
  }

  return strategy;
}

function bytesOf(dtype: string): number {
  return dtype === 'float64' || dtype === 'int64' ? 8 : dtype === 'bfloat16' || dtype === 'float16' ? 2 : 4;
}

/** Shard and replica groups for the plan (every rank creates every group, in the same order). */
async function buildLayout<T>(ctx: StrategyContext<T>, plan: FsdpPlan): Promise<Layout<T>> {
  const world = ctx.numProcesses;
  const rank = ctx.processIndex;
  const S = plan.shardGroupSize;
  if (world % S !== 0) throw new Error(`FSDP: ${world} processes cannot be split into shard groups of ${S}.`);
  const R = world / S;
  const shardIndex = Math.floor(rank / S);
  let shardGroup: ProcessGroup<T> | undefined;
  let replicaGroup: ProcessGroup<T> | undefined;
  if (S > 1) {
    if (R === 1) shardGroup = ctx.group;
    else {
      for (let g = 0; g < R; g++) {
        const ranks = Array.from({ length: S }, (_, i) => g * S + i);
        const pg = await ctx.group!.newGroup(ranks);
        if (g === shardIndex) shardGroup = pg ?? undefined;
      }
    }
  }
  if (R > 1) {
    if (S === 1) replicaGroup = ctx.group;
    else {
      for (let i = 0; i < S; i++) {
        const ranks = Array.from({ length: R }, (_, k) => k * S + i);
        const pg = await ctx.group!.newGroup(ranks);
        if (i === rank % S) replicaGroup = pg ?? undefined;
      }
    }
  }
  return {
    comm: { shardGroup, replicaGroup, shardRank: S > 1 ? rank % S : 0, shardSize: S, worldSize: world },
    replicaIndex: shardIndex,
  };
}
