/**
 * Distribution strategies: how a model is spread over the processes. As in
 * torch.distributed, where DDP and FSDP are peers over one process group,
 * exactly one strategy is active per Accelerator: core's built-in ones
 * (`single-process`, and `DDP` over the backend's native data-parallel
 * engine) or one a plugin provides (`@accelerate/plugin-fsdp`,
 * `@accelerate/plugin-deepspeed`, `@accelerate/plugin-megatron`, or a user's).
 *
 * The Accelerator does the parts every strategy shares (device placement,
 * the precision wrapper, accumulation bookkeeping, data loading) and asks the
 * strategy for the rest: wrapping, gradient synchronisation, clipping, the
 * model's state dict, and the model files in a checkpoint.
 * @module
 */
import type { HostTensor } from '../tensor/host-tensor.js';
import type { Backend, BackendCapabilityName } from './backend.js';
import type { ProcessGroup } from './process-group.js';
import type { DistributedType } from '../state/distributed-type.js';
import type { CheckpointParticipant } from './checkpoint.js';

/** What a strategy is given when the Accelerator sets it up. */
export interface StrategyContext<T = unknown> {
  readonly backend: Backend<T, any, any, any>;
  /** The world's process group; undefined on one process. */
  readonly group: ProcessGroup<T> | undefined;
  readonly processIndex: number;
  readonly numProcesses: number;
  /** This process's device (`cpu`, `cuda:0`, …). */
  readonly device: string;
  /** Messages prefixed with the strategy's name; only the main process prints unless `mainProcessOnly: false`. */
  readonly logger: StrategyLogger;
}

/** The logger a strategy or plugin gets. */
export interface StrategyLogger {
  debug(message: string): void;
  info(message: string, options?: { mainProcessOnly?: boolean }): void;
  warning(message: string, options?: { mainProcessOnly?: boolean }): void;
}

/** Which state dict {@link DistributionStrategy.stateDict} returns. */
export type StateDictType = 'full' | 'sharded';

/**
 * A distribution strategy. Only `name` and `wrapModel` are required: the
 * Accelerator falls back to local behaviour (the backend's own clipping and
 * state dict, one model file on the main process) where a method is absent.
 */
export interface DistributionStrategy<M = unknown, T = unknown> {
  /** Shown in errors and `accelerate env` (`DDP`, `FSDP`, `local-sgd`). */
  readonly name: string;
  /**
   * What `accelerator.distributedType` reports while this strategy runs
   * (FSDP, DEEPSPEED, MEGATRON_LM); absent = the world's own type
   * (MULTI_CPU, MULTI_GPU, NO).
   */
  readonly distributedType?: DistributedType;
  /**
   * Backend capabilities the strategy needs. Checked once, at setup, with one
   * error naming the capability and the backend.
   */
  readonly requires?: readonly BackendCapabilityName[];

  /** Called once, when the process group is ready and before any model is wrapped. */
  setup?(ctx: StrategyContext<T>): void | Promise<void>;
  /**
   * Distribute a model that is already on its device and has its precision
   * wrapper. Returns the object the user trains (may be the same object).
   */
  wrapModel(model: M, ctx: StrategyContext<T>): M | Promise<M>;
  /**
   * Adapt an optimizer to the wrapped models, before the Accelerator wraps it:
   * a sharded strategy points it at this rank's shards of the parameters it
   * was built over. `models` are the models prepared so far (`prepare` wraps
   * the models of a call before its optimizers). Returns the optimizer to use
   * (may be the same object). Absent: the optimizer is used as given.
   */
  prepareOptimizer?(optimizer: unknown, models: readonly M[], ctx: StrategyContext<T>): unknown | Promise<unknown>;
  /** The model {@link wrapModel} was given. Absent: the wrapped model itself. */
  unwrapModel?(model: M): M;
  /**
   * Turn gradient synchronisation of `model` on or off (DDP's `no_sync`, used
   * by `accumulate` and `noSync`). Absent: gradients are never synchronised
   * in backward, so there is nothing to turn off.
   */
  setGradientSync?(model: M, enabled: boolean): void;
  /** Make the next backward synchronise even with sync off. */
  triggerSyncInBackward?(model: M): void;
  /**
   * Runs after every optimizer step that actually stepped (a step skipped on
   * a non-sync micro-step or an fp16 overflow does not count), e.g. to
   * average parameters every k steps.
   */
  afterOptimizerStep?(models: readonly M[], ctx: StrategyContext<T>): void | Promise<void>;
  /**
   * Clip the global gradient norm of `params` (all parameters of the models
   * they belong to); returns the total norm before clipping, the same on every
   * rank. A sharded strategy all-reduces the shards' squared norms. Absent:
   * the backend's local clipping, which is right when every rank holds every
   * full gradient (DDP after sync).
   */
  clipGradNorm?(params: T[], maxNorm: number, normType: number): number | Promise<number>;
  /**
   * The model's weights as host tensors, with PyTorch's names. `full`: every
   * tensor whole (what `saveModel` writes; a sharded strategy gathers them —
   * on every rank, or only on rank 0 when `rank0Only`, returning `{}` elsewhere).
   * `sharded`: this rank's shards. Absent: the backend's state dict.
   */
  stateDict?(model: M, options: { type: StateDictType; rank0Only?: boolean }): Record<string, HostTensor> | Promise<Record<string, HostTensor>>;
  /** Load a {@link stateDict} of the given type back. Absent: the backend's `loadStateDict` into the unwrapped model. */
  loadStateDict?(model: M, state: Record<string, HostTensor>, options: { type: StateDictType; strict?: boolean }): void | Promise<void>;
  /**
   * The checkpoint participant that saves and loads the prepared models in
   * `saveState`/`loadState` (one file per model on the main process, or one
   * shard per rank). Absent: core's default (`model.safetensors`,
   * `model_1.safetensors`, … written by the main process from the full state dict).
   */
  modelCheckpoint?(models: () => readonly M[], ctx: StrategyContext<T>): CheckpointParticipant;
  /**
   * The checkpoint participant that saves and loads the prepared optimizers'
   * states in place of core's (`optimizer.json` + `.safetensors` written by
   * the main process), for strategies whose ranks hold different parts of
   * the state. Its name must be `optimizers`.
   */
  optimizerCheckpoint?(optimizers: () => readonly unknown[], ctx: StrategyContext<T>): CheckpointParticipant;
  /**
   * Run `fn` when ranks may have different numbers of batches (torch's Join).
   * Absent: `joinUnevenInputs` warns and runs `fn` as is.
   */
  joinUnevenInputs?<R>(models: M[], fn: () => R | Promise<R>, options: { divideByInitialWorldSize: boolean }): Promise<R>;
  /** Release what `setup` acquired (subgroups, hooks). */
  teardown?(): void | Promise<void>;
}

/**
 * The package to suggest (only as the text of an "npm install …" hint) for
 * each strategy a configuration can ask for by `distributed_type`. Core never
 * imports these names: the plugin is found by scanning for a package whose
 * package.json says `"accelerate": { "plugin": { "entry": "…", "strategy": "FSDP" } }`.
 */
export const STRATEGY_INSTALL_HINTS: Readonly<Record<'FSDP' | 'DEEPSPEED' | 'MEGATRON_LM', string>> = {
  FSDP: '@accelerate/plugin-fsdp',
  DEEPSPEED: '@accelerate/plugin-deepspeed',
  MEGATRON_LM: '@accelerate/plugin-megatron',
};
