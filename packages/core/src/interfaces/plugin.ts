/**
 * Plugins (FSDP, DeepSpeed, Megatron, offloading, user plugins) hook into the
 * Accelerator at fixed points. The shape follows Vite's plugin API: an object
 * with a `name`, an optional `enforce` order, `apply`, a `config` hook that
 * contributes defaults, and hooks that are functions or `{ handler, order }`
 * objects, each receiving a typed {@link PluginContext}.
 *
 * A plugin that owns distribution provides a {@link DistributionStrategy}
 * through `strategy`; exactly one may (DDP is the built-in default).
 * @module
 */
import type { ResolvedConfig, ResolvedValues } from '../config/resolve.js';
import type { AcceleratorState } from '../state/accelerator-state.js';
import type { MultiProcessLogger } from '../utils/logging.js';
import type { Backend } from './backend.js';
import type { CheckpointParticipant } from './checkpoint.js';
import type { ProcessGroup } from './process-group.js';
import type { DistributionStrategy } from './strategy.js';

/** A hook as a bare function, or with an explicit order among plugins. */
export type PluginHook<F extends (...args: any[]) => any> =
  | F
  | { handler: F; order?: 'pre' | 'post' | null };

/**
 * What hooks receive. `Options` is the type of the plugin's own settings:
 * its config section (`fsdp_config:` in `default_config.yaml`, `FSDP_*` env
 * vars, `--fsdp_*` flags) resolved, over the defaults its `config` hook gave.
 */
export interface PluginContext<Options = unknown> {
  /** The resolved, frozen configuration's values. */
  readonly config: Readonly<ResolvedValues>;
  /** The same with each value's source (default, config file, env, launch flag, constructor). */
  readonly resolvedConfig: ResolvedConfig;
  /** This plugin's own settings (see {@link Plugin.section}); `{}` when it has none. */
  readonly options: Options;
  /** The accelerator's state: world, precision, plugin names. */
  readonly state: AcceleratorState;
  /** The compute backend; ask for optional capabilities with `requireCapability`. */
  readonly backend: Backend<any, any, any, any>;
  /** The world's process group; undefined on one process. */
  readonly group: ProcessGroup<any> | undefined;
  /**
   * A subgroup of `ranks` of the world group (every rank must call it, in the
   * same order; non-members get null). Throws on one process.
   */
  newGroup(ranks: readonly number[]): Promise<ProcessGroup<any> | null>;
  /** Logs prefixed with `[plugin name]`; main process only unless `mainProcessOnly: false`. */
  readonly logger: MultiProcessLogger;
  /**
   * Add a participant to every later `saveState`/`loadState` (its files sit in
   * the checkpoint folder next to the models'; its name must be unique).
   */
  addCheckpointParticipant(participant: CheckpointParticipant): void;
  readonly processIndex: number;
  readonly numProcesses: number;
  readonly device: string;
}

/**
 * A plugin. Every hook is optional. Hooks that transform an object return the
 * replacement, or `undefined` to keep it. `M`, `O`, `L` are the model,
 * optimizer and data-loader types the plugin handles.
 */
export interface Plugin<Options = any, M = any, O = any, L = any> {
  /** Unique name; also the plugin's namespace inside checkpoints. */
  readonly name: string;
  /** Run before (`pre`) or after (`post`) normal plugins. */
  readonly enforce?: 'pre' | 'post';
  /** Names of plugins this one cannot be combined with (checked once, with both names in the error). */
  readonly conflictsWith?: readonly string[];
  /**
   * The settings section the plugin reads as `ctx.options` (`fsdp`,
   * `deepspeed`, `megatron`, `parallelism`, or its own name for settings
   * only it knows).
   */
  readonly section?: string;
  /** Return false to leave this plugin out for the resolved configuration. */
  apply?(config: Readonly<ResolvedValues>): boolean;
  /**
   * Contribute defaults for the plugin's section, e.g. the options passed to
   * the plugin's factory. Config file, env vars, launch flags and the
   * Accelerator's constructor still win over them (Accelerate's rule that a
   * plugin argument is a default the launcher's settings override).
   */
  config?(config: Readonly<ResolvedValues>): Partial<Options> | void;
  /**
   * The distribution strategy this plugin provides (see
   * {@link DistributionStrategy}); a function is called once, when the
   * process group is ready. At most one active plugin may provide one.
   */
  readonly strategy?: DistributionStrategy<M> | ((ctx: PluginContext<Options>) => DistributionStrategy<M> | Promise<DistributionStrategy<M>>);

  configResolved?: PluginHook<(ctx: PluginContext<Options>) => void | Promise<void>>;
  processGroupReady?: PluginHook<(ctx: PluginContext<Options>) => void | Promise<void>>;
  /** Runs before the Accelerator places, casts and distributes the model (the strategy wraps it after). */
  prepareModel?: PluginHook<(model: M, ctx: PluginContext<Options>) => M | void | Promise<M | void>>;
  prepareOptimizer?: PluginHook<(optimizer: O, ctx: PluginContext<Options>) => O | void | Promise<O | void>>;
  prepareDataLoader?: PluginHook<(loader: L, ctx: PluginContext<Options>) => L | void | Promise<L | void>>;
  prepareScheduler?: PluginHook<(scheduler: unknown, ctx: PluginContext<Options>) => unknown>;
  /** Return true when the plugin performed the backward pass itself. */
  backward?: PluginHook<(loss: unknown, ctx: PluginContext<Options>) => boolean | void>;
  /** Return true when the plugin performed the optimizer step itself. */
  optimizerStep?: PluginHook<(optimizer: O, ctx: PluginContext<Options>) => boolean | void>;
  /** Write the plugin's state into `dir` (its own namespace folder, `plugins/<name>/`). */
  saveState?: PluginHook<(dir: string, ctx: PluginContext<Options>) => void | Promise<void>>;
  loadState?: PluginHook<(dir: string, ctx: PluginContext<Options>) => void | Promise<void>>;
  teardown?: PluginHook<(ctx: PluginContext<Options>) => void | Promise<void>>;
}
