/**
 * FSDP's checkpoint participants, inside `saveState`'s atomic folder and
 * manifest:
 *
 * - models, FULL_STATE_DICT: gathered to rank 0 and written as core writes
 *   any model (`model.safetensors`, `model_1.safetensors`, … — readable by
 *   PyTorch and transformers);
 * - models, SHARDED_STATE_DICT: every rank writes its pieces in parallel
 *   (`pytorch_model_fsdp_<i>/`, core's sharded tensor set), read back at any
 *   world size;
 * - optimizers: always sharded (`optimizer_<i>/`), each state tensor cut as
 *   its parameter is, so a run resumes bit-identically at the same world
 *   size and reshards at another one.
 *
 * Only the ranks of the first replica write pieces (HYBRID_SHARD keeps the
 * same shards on every replica).
 * @module
 */
import { HostTensor, type Backend, type CheckpointParticipant, type DType, type ShardingCapability, type StateDictType, type StrategyContext } from '@accelerate/core';
import { openShardedTensors, shardedModelFolder, shardedOptimizerFolder, writeShardedTensors, type ShardedPiece } from '@accelerate/core/internal';
import type { FsdpModel } from './strategy.js';
import type { FsdpPlan } from './options.js';
import type { ParamSlot } from './flat-param.js';

/** File of model `i` in a FULL_STATE_DICT checkpoint (core's model file names). */
export const fullModelFile = (i: number) => (i === 0 ? 'model.safetensors' : `model_${i}.safetensors`);

interface ModelHost<T, M> {
  plan: FsdpPlan;
  models: () => FsdpModel<T, M>[];
  stateDict: (s: FsdpModel<T, M>, type: StateDictType) => Record<string, HostTensor>;
  load: (s: FsdpModel<T, M>, state: Record<string, HostTensor>, type: StateDictType) => void;
  replicaIndex: () => number;
  backend: Backend<T, M, any, any>;
  sharding: ShardingCapability<T, M>;
}

interface Recorded {
  models: number;
  stateDictType: 'FULL_STATE_DICT' | 'SHARDED_STATE_DICT';
}

/** The participant that saves and loads the prepared models. */
export function fsdpModelCheckpoint<T, M>(host: ModelHost<T, M>, ctx: StrategyContext<T>): CheckpointParticipant {
  const { backend } = host;
  return {
    name: 'fsdp_models',
    writers: 'every',
    async save(w) {
      const states = host.models();
      const type = host.plan.stateDictType;
      w.record({ models: states.length, stateDictType: type } satisfies Recorded);
      for (let i = 0; i < states.length; i++) {
        const s = states[i];
        if (type === 'FULL_STATE_DICT') {
          const sd = host.stateDict(s, 'full'); // every rank takes part in the gathers; rank 0 gets the tensors
          if (w.isMainProcess) await w.writeTensors(fullModelFile(i), sd);
          continue;
        }
        const pieces: ShardedPiece[] = [];
        const tensors: Record<string, { shape: number[]; dtype: DType }> = {};
        const paramNames = new Set<string>();
        for (const u of s.units) {
          u.slots.forEach((slot, k) => {
            paramNames.add(slot.name);
            tensors[slot.name] = { shape: slot.shape, dtype: 'float32' };
            if (host.replicaIndex() === 0 && slot.pieceNumel > 0) {
              pieces.push({ name: slot.name, shape: slot.shape, dtype: 'float32', offset: slot.pieceOffset, data: backend.toHost(u.leaves[k]) });
            }
          });
        }
        // Buffers and ignored parameters are whole on every rank: rank 0 writes them. (A tied
        // parameter's other names are left out; loading restores the tie by sharing.)
        const sharded = new Set(s.units.flatMap((u) => u.slots.map((x) => x.param)));
        const { params, buffers } = s.tensors();
        const whole = [...params.filter((p) => !sharded.has(p.param)).map((p) => ({ name: p.name, tensor: p.param })), ...buffers];
        for (const { name, tensor } of whole) {
          if (tensors[name]) continue;
          const shape = backend.shape(tensor);
          tensors[name] = { shape, dtype: backend.dtype(tensor) };
          if (ctx.processIndex === 0) pieces.push({ name, shape, dtype: backend.dtype(tensor), offset: 0, data: flat(backend.toHost(tensor)) });
        }
        await writeShardedTensors(w, shardedModelFolder(i), pieces, { tensors, extra: { stateDictType: type } });
      }
    },
    async read(r) {
      const rec = r.recorded as Recorded | undefined;
      const states = host.models();
      if (rec && rec.models !== states.length) {
        throw new Error(`loadState: ${r.dir} holds ${rec.models} FSDP model(s), but ${states.length} are prepared. Prepare the same models as the run that saved it.`);
      }
      const type = rec?.stateDictType ?? (await r.exists(fullModelFile(0)) ? 'FULL_STATE_DICT' : 'SHARDED_STATE_DICT');
      const loads: Array<() => void> = [];
      for (let i = 0; i < states.length; i++) {
        const s = states[i];
        if (type === 'FULL_STATE_DICT') {
          const tensors = await r.readTensors(fullModelFile(i));
          loads.push(() => host.load(s, tensors, 'full'));
          continue;
        }
        const set = await openShardedTensors(r, shardedModelFolder(i));
        const state: Record<string, HostTensor> = {};
        const paramNames = new Set<string>();
        for (const u of s.units) {
          for (const slot of u.slots) {
            paramNames.add(slot.name);
            if (!set.tensors[slot.name]) throw new Error(`loadState: ${r.dir}/${shardedModelFolder(i)} has no parameter "${slot.name}" of model ${i}.`);
            checkShape(set.tensors[slot.name].shape, slot, `${r.dir}/${shardedModelFolder(i)}`);
            // An empty piece's pieceOffset may lie past the parameter's end (the parameter sits
            // wholly before this rank's range of the flat buffer): nothing to read.
            state[slot.name] = slot.pieceNumel === 0 ? new HostTensor(new Float32Array(0), [0], 'float32') : await set.read(slot.name, slot.pieceOffset, slot.pieceNumel);
          }
        }
        for (const name of Object.keys(set.tensors)) if (!paramNames.has(name)) state[name] = await set.readFull(name);
        loads.push(() => host.load(s, state, 'sharded'));
      }
      return () => {
        for (const load of loads) load();
      };
    },
  };
}

function checkShape<T>(saved: number[], slot: ParamSlot<T>, where: string): void {
  if (saved.join('x') !== slot.shape.join('x')) {
    throw new Error(`loadState: "${slot.name}" is [${saved.join(', ')}] in ${where} but [${slot.shape.join(', ')}] in the model.`);
  }
}

/** A host tensor as 1-D (same data). */
function flat(h: HostTensor): HostTensor {
  return new HostTensor(h.data, [h.data.length], h.dtype);
}

interface OptimizerHost<T> {
  optimizers: () => readonly unknown[];
  /** The unit slot whose optimizer leaf `leaf` is, or undefined for a parameter FSDP does not shard. */
  slotOfLeaf: (leaf: T) => ParamSlot<T> | undefined;
  /** Name of an ignored (unsharded) parameter. */
  nameOfParam: (param: T) => string | undefined;
  replicaIndex: () => number;
  backend: Backend<T, any, any, any>;
}

/** A PyTorch-layout optimizer state dict (what `optimizers.stateDict` returns). */
interface TorchOptimizerState {
  state: Record<string, Record<string, unknown>>;
  param_groups: Array<Record<string, unknown> & { params: number[] }>;
}

interface OptimizerExtra {
  /** Parameter names per group, with the group's hyperparameters. */
  param_groups: Array<Record<string, unknown> & { params: string[] }>;
  /** Non-tensor state per parameter name (`step`, …). */
  scalars: Record<string, Record<string, unknown>>;
}

const SEP = '::';

/** The participant that saves and loads the prepared optimizers' sharded states (replaces core's). */
export function fsdpOptimizerCheckpoint<T>(host: OptimizerHost<T>, ctx: StrategyContext<T>): CheckpointParticipant {
  const { backend } = host;
  const optimizers = backend.optimizers!;
  /** Name, shape and this rank's piece of each optimizer parameter, in state-dict index order. */
  const layoutOf = (opt: unknown) =>
    optimizers.params(opt).map((p, idx) => {
      const slot = host.slotOfLeaf(p as T);
      if (slot) return { name: slot.name, shape: slot.shape, offset: slot.pieceOffset, numel: slot.pieceNumel, whole: false };
      const shape = backend.shape(p as T);
      const numel = shape.reduce((a, b) => a * b, 1);
      return { name: host.nameOfParam(p as T) ?? `param_${idx}`, shape, offset: 0, numel, whole: true };
    });
  return {
    name: 'optimizers',
    writers: 'every',
    async save(w) {
      const opts = host.optimizers();
      w.record(opts.length);
      for (let i = 0; i < opts.length; i++) {
        const opt = opts[i];
        const sd = (await optimizers.stateDict!(opt)) as TorchOptimizerState;
        const layout = layoutOf(opt);
        const pieces: ShardedPiece[] = [];
        const tensors: Record<string, { shape: number[]; dtype: DType }> = {};
        const scalars: OptimizerExtra['scalars'] = {};
        const keys = new Set<string>();
        for (const [idx, entry] of Object.entries(sd.state)) {
          const l = layout[Number(idx)];
          for (const [key, value] of Object.entries(entry)) {
            if (isHostTensor(value)) {
              keys.add(key);
              const writes = l.whole ? ctx.processIndex === 0 : host.replicaIndex() === 0;
              if (writes && l.numel > 0) pieces.push({ name: `${l.name}${SEP}${key}`, shape: l.shape, dtype: value.dtype, offset: l.offset, data: flat(value) });
            } else (scalars[l.name] ??= {})[key] = value;
          }
        }
        // Every parameter's state tensors, also those whose piece is empty on the main process —
        // but only of parameters that have state on some rank: a frozen parameter (or one the
        // optimizer never stepped) has none anywhere, and listing it would leave its tensors
        // uncovered, making the set unloadable. Which parameters have state (and their step) is
        // agreed on by all ranks: each knows only the parameters it holds a piece of.
        const stepped = await steppedParams(sd, layout.length, ctx);
        for (const [k, l] of layout.entries()) {
          if (stepped[k] === 0) continue;
          for (const key of keys) tensors[`${l.name}${SEP}${key}`] = { shape: l.shape, dtype: 'float32' };
          const sc = (scalars[l.name] ??= {});
          if (!('step' in sc)) sc.step = stepped[k] - 1;
        }
        const extra: OptimizerExtra = {
          param_groups: sd.param_groups.map((g) => ({ ...g, params: g.params.map((k) => layout[k].name) })),
          scalars,
        };
        await writeShardedTensors(w, shardedOptimizerFolder(i), pieces, { tensors, extra });
      }
    },
    async read(r) {
      const opts = host.optimizers();
      const saved = typeof r.recorded === 'number' ? r.recorded : undefined;
      if (saved !== undefined && saved !== opts.length) {
        throw new Error(`loadState: ${r.dir} holds ${saved} optimizer(s), but ${opts.length} are prepared. Prepare the same optimizers as the run that saved it.`);
      }
      const states: TorchOptimizerState[] = [];
      for (let i = 0; i < opts.length; i++) {
        const set = await openShardedTensors(r, shardedOptimizerFolder(i));
        const extra = set.extra as OptimizerExtra;
        const layout = layoutOf(opts[i]);
        const index = new Map(layout.map((l, k) => [l.name, k]));
        const state: TorchOptimizerState['state'] = {};
        const maxScalars: Record<string, unknown> = {};
        for (const sc of Object.values(extra.scalars)) for (const [k, v] of Object.entries(sc)) if (typeof v === 'number') maxScalars[k] = Math.max(Number(maxScalars[k] ?? v), v);
        for (const [k, l] of layout.entries()) {
          const keys = Object.keys(set.tensors).filter((n) => n.startsWith(`${l.name}${SEP}`));
          if (keys.length === 0 || l.numel === 0) continue;
          const entry: Record<string, unknown> = { ...maxScalars, ...(extra.scalars[l.name] ?? {}) };
          for (const n of keys) {
            const piece = await set.read(n, l.offset, l.numel);
            entry[n.slice(l.name.length + SEP.length)] = l.whole ? new HostTensor(piece.data, l.shape, piece.dtype) : piece;
          }
          state[k] = entry;
        }
        const groups = extra.param_groups.map((g) => ({
          ...g,
          params: g.params.map((name) => {
            const k = index.get(name);
            if (k === undefined) throw new Error(`loadState: optimizer ${i} in ${r.dir} has state for "${name}", which the prepared optimizer does not hold.`);
            return k;
          }),
        }));
        states.push({ state, param_groups: groups });
      }
      return async () => {
        for (let i = 0; i < opts.length; i++) await optimizers.loadStateDict!(opts[i], states[i]);
      };
    },
  };
}

/**
 * Per optimizer parameter (state-dict index): 0 when no rank has state for it,
 * else 1 + its step count (the largest any rank has) — a max all-reduce over
 * the world, so every rank (the main process writes the index) agrees.
 */
async function steppedParams<T>(sd: TorchOptimizerState, count: number, ctx: StrategyContext<T>): Promise<Float64Array> {
  const out = new Float64Array(count);
  for (const [idx, entry] of Object.entries(sd.state)) {
    const k = Number(idx);
    if (!(k >= 0 && k < count)) continue;
    const hasTensor = Object.values(entry).some((v) => isHostTensor(v) && v.data.length > 0);
    if (!hasTensor) continue;
    const step = typeof entry.step === 'number' ? entry.step : 0;
    out[k] = Math.max(out[k], 1 + step);
  }
  if (ctx.group && ctx.numProcesses > 1 && count > 0) await ctx.group.allReduce(out, 'max').wait();
  return out;
}

function isHostTensor(v: unknown): v is HostTensor {
  return v instanceof HostTensor;
}
