/**
 * The `Accelerator`: keep your training loop, run it on one CPU or many
 * processes, with gradient accumulation and mixed precision, through any
 * registered backend.
 * @module
 */
import { requireCapability, type Backend, type BackendFactory, type GradScaler, type Loss, type MixedPrecision } from '../interfaces/backend.js';
import type { Plugin, PluginContext } from '../interfaces/plugin.js';
import type { CheckpointParticipant } from '../interfaces/checkpoint.js';
import type { DistributionStrategy, StrategyContext } from '../interfaces/strategy.js';
import type { Tracker } from '../interfaces/tracker.js';
import { TrackerHub, type LogWith } from '../tracking/hub.js';
import { GradientState, type GradientAccumulationOptions } from '../state/gradient-state.js';
import { PartialState } from '../state/partial-state.js';
import { AcceleratorState } from '../state/accelerator-state.js';
import { DistributedType } from '../state/distributed-type.js';
import {
  broadcast as broadcastOp,
  gather as gatherOp,
  gatherObject as gatherObjectOp,
  padAcrossProcesses as padOp,
  reduce as reduceOp,
  splitBetweenProcesses as splitOp,
  type CollectiveContext,
  type PadAcrossProcessesOptions,
  type Reduction,
} from '../ops/collectives.js';
import { isHostTensor, isPlainObject, sendToDevice, sliceTensors } from '../ops/structure.js';
import { DataLoader } from '../data/dataloader.js';
import { prepareDataLoader } from '../data/prepare.js';
import { PreparedDataLoader, skipFirstBatches as skipFirstBatchesImpl } from '../data/loaders.js';
import { findExecutableBatchSize as findBatchSizeImpl } from '../utils/memory.js';
import { checkOsKernel } from '../utils/environment.js';
import { saveModelFiles, type SaveModelOptions, type SaveModelResult } from '../checkpoint/save-model.js';
import {
  HookRegistry,
  checkCheckpointable,
  loadAcceleratorState,
  saveAcceleratorState,
  type CheckpointHost,
  type LoadStateHook,
  type LoadStateOptions,
  type LoadStateResult,
  type RemovableHandle,
  type SaveStateHook,
  type SaveStateOptions,
} from '../checkpoint/save-state.js';
import type { HostTensor } from '../tensor/host-tensor.js';
import { resolveConfig, type ResolvedConfig } from '../config/resolve.js';
import { SETTING_SECTIONS, type SettingSectionName } from '../config/settings.js';
import { resolveBackend } from '../registry/backend-registry.js';
import { discoverInstalledBackends } from './backend-discovery.js';
import { normalizeProjectConfiguration, type DataLoaderConfiguration, type ProjectConfiguration } from './configurations.js';
import { indexKwargsHandlers, type AnyKwargsHandler, GradScalerKwargs, InitProcessGroupKwargs } from './kwargs-handlers.js';
import { PluginContainer, type PluginOption } from './plugin-container.js';
import { ddpStrategy, singleProcessStrategy } from './builtin-strategies.js';
import { missingStrategyPackage, requestedStrategy, strategyProvider } from './strategy-selection.js';
import { loadStrategyPlugin } from './strategy-discovery.js';
import { applyPendingSeed } from './seed.js';
import { joinUnevenInputs as joinUnevenInputsImpl, type JoinUnevenInputsOptions } from './join.js';
import { optimizerStepState, unwrapPrepared, wrapOptimizer, wrapScheduler } from './wrappers.js';
import type { Prepared } from './prepared-types.js';
import { checkOptionNames } from './option-names.js';
import { getLogger } from '../utils/logging.js';
import type { ResolvedSetting } from '../config/resolve.js';

/**
 * Constructor options of {@link Accelerator}. Names follow Accelerate's, in camelCase.
 * An unknown key (here or in `dataloaderConfig`, `projectConfig`, `gradientAccumulationPlugin`)
 * is a TypeError naming the nearest valid one, as Python's unexpected keyword argument is.
 */
export interface AcceleratorOptions {
  /**
   * Compute backend: an instance, a factory, or a registered name. Default:
   * the highest-priority backend that initialises (installed `@accelerate/backend-*`
   * packages are discovered automatically). Without this option, env
   * `ACCELERATE_BACKEND` (e.g. `tfjs`; `auto` = unset) names the backend.
   */
  backend?: Backend<any, any, any, any> | BackendFactory | string;
  /** `no` | `fp16` | `bf16` | `fp8`. Default from env `ACCELERATE_MIXED_PRECISION`, the config file, else `no`. */
  mixedPrecision?: MixedPrecision;
  /** Micro-batches per optimizer update. Default 1. */
  gradientAccumulationSteps?: number;
  /** Full accumulation options; cannot be combined with `gradientAccumulationSteps`. */
  gradientAccumulationPlugin?: GradientAccumulationOptions;
  /** Run on the CPU even if an accelerator device exists. */
  cpu?: boolean;
  /** Move models and batches to the device. Default true. */
  devicePlacement?: boolean;
  dataloaderConfig?: DataLoaderConfiguration;
  projectConfig?: ProjectConfiguration;
  /** Shorthand for `projectConfig.projectDir`. */
  projectDir?: string;
  /** Tie prepared schedulers to optimizer updates (see `schedulerStepsPerCall`). Default true. */
  stepSchedulerWithOptimizer?: boolean;
  /** Kwargs handlers (DDP, process group, grad scaler, autocast); each class at most once. */
  kwargsHandlers?: AnyKwargsHandler[];
  /** Plugins (FSDP, DeepSpeed, user plugins). Frozen at the first `prepare`. */
  plugins?: PluginOption[];
  /**
   * Experiment trackers: `'all'`, tracker names (`'tensorboard'`, `'csv'`,
   * `'mlflow'`, …), or tracker instances. Only the main process logs unless a
   * tracker says otherwise. Needs `projectDir`/`loggingDir` for file trackers.
   */
  logWith?: LogWith;
  /** Config file to read; `false` to ignore any default config file. Default: `$HF_HOME/accelerate/default_config.yaml` when present. */
  configFile?: string | false;
  /** Environment to read instead of `process.env` (tests, embedding). */
  env?: Readonly<Record<string, string | undefined>>;
}

const MIXED_PRECISIONS: readonly MixedPrecision[] = ['no', 'fp16', 'bf16', 'fp8'];

// Keyed by every option, so the compiler fails here when AcceleratorOptions gains one that is not listed.
const OPTION_NAMES: Record<keyof AcceleratorOptions, true> = {
  backend: true,
  mixedPrecision: true,
  gradientAccumulationSteps: true,
  gradientAccumulationPlugin: true,
  cpu: true,
  devicePlacement: true,
  dataloaderConfig: true,
  projectConfig: true,
  projectDir: true,
  stepSchedulerWithOptimizer: true,
  kwargsHandlers: true,
  plugins: true,
  logWith: true,
  configFile: true,
  env: true,
};

/**
 * Where a precision setting came from and how to change it there, for errors:
 * "(from the config file /x/default_config.yaml (mixed_precision); …)".
 */
function precisionOrigin(setting: ResolvedSetting<MixedPrecision>, instead: string): string {
  const v = JSON.stringify(setting.value);
  const orCode = `, or pass mixedPrecision: "${instead}" to the Accelerator (the constructor wins over every other source)`;
  switch (setting.source) {
    case 'constructor':
      return `It was set by the Accelerator option mixedPrecision: ${v}; pass "${instead}" or "no" instead.`;
    case 'launch flag': {
      // Through the launcher the detail is "--mixed_precision (via ACCELERATE_MIXED_PRECISION)".
      const via = /^(\S+)(?: \(via (\S+)\))?$/.exec(setting.detail);
      const flag = via?.[1] || '--mixed_precision';
      const passed = via?.[2] ? ` (passed to this process as ${via[2]})` : '';
      return `It was set by the launch flag ${flag} ${setting.value}${passed}; launch with --mixed_precision ${instead} (or no) instead${orCode}.`;
    }
    case 'env':
      return `It was set by the environment variable ${setting.detail}=${setting.value}; unset it or set it to ${instead} (or no)${orCode}.`;
    case 'config file':
      // Through `accelerate launch` the detail also names the variable it came by: "<file> (mixed_precision) (via ACCELERATE_MIXED_PRECISION)".
      return `It was set by the config file ${setting.detail}; change that line to "mixed_precision: ${instead}" (or no), run \`accelerate config\` again, or launch with --mixed_precision ${instead}${orCode}.`;
    default:
      return `It is the default (${setting.detail || 'no source set it'}); pass mixedPrecision: "${instead}" to the Accelerator.`;
  }
}

/**
 * The entry point of accelerate-ts.
 *
 * ```ts
 * const accelerator = new Accelerator({ gradientAccumulationSteps: 2 });
 * const [model, optimizer, loader] = await accelerator.prepare(model0, optimizer0, loader0);
 * for await (const batch of loader) {
 *   await accelerator.accumulate(model, async () => {
 *     accelerator.backward(lossOf(model, batch));
 *     optimizer.step();
 *     optimizer.zeroGrad();
 *   });
 * }
 * ```
 *
 * Construction is synchronous and only resolves configuration. Joining the
 * process group and choosing the device are asynchronous: they happen in
 * {@link Accelerator.ready}, which `prepare` and every collective await for
 * you. Properties that need them (`device`, `processIndex`, …) throw a
 * teaching error before that.
 */
export class Accelerator {
  /** The resolved configuration, with where each value came from. */
  readonly config: ResolvedConfig;
  /** Shared gradient state (accumulation and sync). */
  readonly gradientState: GradientState;
  readonly devicePlacement: boolean;
  readonly stepSchedulerWithOptimizer: boolean;
  readonly projectConfiguration: ReturnType<typeof normalizeProjectConfiguration>;
  readonly dataloaderConfig: Readonly<DataLoaderConfiguration>;

  private readonly options: AcceleratorOptions;
  private readonly handlers: ReturnType<typeof indexKwargsHandlers>;
  private readonly pluginOptions: PluginOption[];
  private pluginContainer: PluginContainer | undefined;
  private readyPromise: Promise<this> | undefined;
  private partial: PartialState | undefined;
  private generation = -1;
  private scaler: GradScaler<any, any> | undefined;
  private triggerFlag = false;
  /** The one distribution strategy, chosen with the plugins at the first prepare. */
  private activeStrategy: DistributionStrategy<any, any> | undefined;
  private strategyCtx: StrategyContext<any> | undefined;
  /** Checkpoint participants plugins added through their context. */
  private readonly pluginParticipants: CheckpointParticipant[] = [];
  /** The plugin of the strategy package the configuration names, loaded by `ready()`. */
  private configuredStrategyPlugin: Plugin | undefined;

  /** The run's trackers (see {@link AcceleratorOptions.logWith}). */
  readonly trackerHub: TrackerHub;

  /** Models, optimizers, schedulers and loaders returned by `prepare`, in order. */
  readonly models: unknown[] = [];
  readonly optimizers: unknown[] = [];
  readonly schedulers: unknown[] = [];
  readonly dataloaders: unknown[] = [];
  /** What `prepare` returned, and the user's object each came from: a second prepare reuses them. */
  private readonly preparedOutputs = new WeakSet<object>();
  private readonly preparedFrom = new WeakMap<object, object>();
  /**
   * Accelerate's `accelerator.step`: the micro-step counter of gradient
   * accumulation (one per `accumulate` call, back to 0 at the end of a data
   * loader; a step syncs when it is a multiple of `gradientAccumulationSteps`).
   * `saveState` stores it and `loadState` restores it, so a resumed run keeps
   * its accumulation windows.
   */
  get step(): number {
    return this.gradientState.step;
  }
  set step(value: number) {
    this.gradientState.step = value;
  }

  constructor(options: AcceleratorOptions = {}) {
    // A misspelt option would otherwise be ignored without a word (Python raises TypeError too).
    checkOptionNames(options, Object.keys(OPTION_NAMES), 'new Accelerator()');
    this.options = options;
    if (options.gradientAccumulationPlugin && options.gradientAccumulationSteps !== undefined && options.gradientAccumulationSteps !== 1) {
      throw new Error(
        'Pass either gradientAccumulationSteps or gradientAccumulationPlugin, not both: set numSteps inside gradientAccumulationPlugin.',
      );
    }
    if (options.mixedPrecision !== undefined && !MIXED_PRECISIONS.includes(options.mixedPrecision)) {
      throw new Error(`Accelerator mixedPrecision must be one of ${MIXED_PRECISIONS.join(', ')}; got ${JSON.stringify(options.mixedPrecision)}.`);
    }
    this.handlers = indexKwargsHandlers(options.kwargsHandlers ?? []);
    this.config = resolveConfig({
      constructorArgs: {
        mixedPrecision: options.mixedPrecision,
        gradientAccumulationSteps: options.gradientAccumulationPlugin?.numSteps ?? options.gradientAccumulationSteps,
        cpu: options.cpu,
        splitBatches: options.dataloaderConfig?.splitBatches,
        dispatchBatches: options.dataloaderConfig?.dispatchBatches,
        evenBatches: options.dataloaderConfig?.evenBatches,
        projectDir: options.projectConfig?.projectDir ?? options.projectDir,
        loggingDir: options.projectConfig?.loggingDir,
      },
      env: options.env ?? process.env,
      configFile: options.configFile,
    });
    this.gradientState = new GradientState({
      ...options.gradientAccumulationPlugin,
      numSteps: this.config.value('gradientAccumulationSteps'),
    });
    this.devicePlacement = options.devicePlacement ?? true;
    this.stepSchedulerWithOptimizer = options.stepSchedulerWithOptimizer ?? true;
    this.projectConfiguration = normalizeProjectConfiguration({
      ...options.projectConfig,
      projectDir: this.config.value('projectDir'),
      loggingDir: this.config.value('loggingDir'),
    });
    this.dataloaderConfig = {
      ...options.dataloaderConfig,
      splitBatches: this.config.value('splitBatches'),
      dispatchBatches: this.config.value('dispatchBatches'),
      evenBatches: this.config.value('evenBatches'),
    };
    this.pluginOptions = [...(options.plugins ?? [])];
    this.trackerHub = new TrackerHub({
      logWith: options.logWith,
      loggingDir: this.projectConfiguration.loggingDir,
      isMainProcess: () => this.isMainProcess,
      processIndex: () => this.processIndex,
      numProcesses: () => this.numProcesses,
    });
    const kernelWarning = checkOsKernel();
    if (kernelWarning) process.emitWarning(kernelWarning, 'AccelerateWarning');
    for (const w of this.config.warnings) process.emitWarning(w, 'AccelerateWarning');
  }

  /**
   * Resolve the backend, detect the world, join the process group and choose
   * the device. Idempotent; `prepare` and collectives call it for you.
   */
  ready(): Promise<this> {
    this.readyPromise ??= this.init();
    return this.readyPromise;
  }

  /** `new Accelerator(options)` followed by `await ready()`. */
  static async create(options: AcceleratorOptions = {}): Promise<Accelerator> {
    return new Accelerator(options).ready();
  }

  private async init(): Promise<this> {
    const backend = await this.resolveBackendOption();
    // InitProcessGroupKwargs in code wins; else --timeout / ACCELERATE_PROCESS_GROUP_TIMEOUT; else its default.
    const pgKwargs = this.handlers.initProcessGroup ?? new InitProcessGroupKwargs();
    const configured = this.config.value('processGroupTimeout');
    const timeoutMs =
      pgKwargs.fields.timeoutSeconds === undefined && configured !== undefined ? configured * 1000 : pgKwargs.timeoutMs(pgKwargs.fields.backend);
    this.partial = await PartialState.init({
      backend,
      cpu: this.config.value('cpu'),
      env: this.options.env,
      timeoutMs,
      processGroupBackend: this.handlers.initProcessGroup?.fields.backend,
      debug: this.config.value('debug'),
    });
    this.generation = PartialState.generation;
    applyPendingSeed(backend, this.partial.processIndex);
    await this.findRequestedStrategy();
    const precision = this.mixedPrecision;
    if (precision === 'fp16') {
      if (this.partial.device === 'cpu') {
        throw new Error(
          `mixedPrecision "fp16" needs a GPU: fp16 autocast and loss scaling do not run on the CPU (Python Accelerate silently disables it). Use "bf16" on the CPU, or "no". ${precisionOrigin(this.config.mixedPrecision, 'bf16')}`,
        );
      }
      const scalerKwargs = this.handlers.gradScaler ?? new GradScalerKwargs();
      if (scalerKwargs.fields.enabled) {
        if (!backend.precision?.createGradScaler) {
          throw new Error(`The "${backend.name}" backend has no loss scaler (precision.createGradScaler), which fp16 training needs. Use mixedPrecision "bf16" or "no".`);
        }
        this.scaler = backend.precision.createGradScaler({ ...scalerKwargs.fields });
      }
    }
    if (precision === 'fp8') {
      throw new Error(
        `mixedPrecision "fp8" needs an fp8 recipe backend (TransformerEngine, torchao or MS-AMP), which accelerate-ts does not provide yet. Use "bf16". ${precisionOrigin(this.config.mixedPrecision, 'bf16')}`,
      );
    }
    return this;
  }

  /**
   * When the configuration names a strategy (`distributed_type: FSDP`, …) and
   * no plugin given in code provides one, load the package that does — or
   * stop here, before any training, with an error naming it.
   */
  private async findRequestedStrategy(): Promise<void> {
    const requested = requestedStrategy(this.config.values());
    if (!requested) return;
    const flat = (this.pluginOptions.flat(Infinity as 1) as unknown[]).filter(Boolean) as Plugin[];
    if (flat.some((p) => p.strategy !== undefined)) return; // checked against `requested` at setup
    const found = await loadStrategyPlugin(requested);
    if (!found.plugin) throw missingStrategyPackage(requested, found.reason);
    this.configuredStrategyPlugin = found.plugin;
  }

  private async resolveBackendOption(): Promise<Backend<any, any, any, any>> {
    const b = this.options.backend;
    if (b && typeof b === 'object' && 'isTensor' in b) return b as Backend;
    if (b && typeof b === 'object' && 'init' in b) return (b as BackendFactory).init();
    await discoverInstalledBackends();
    const fromEnv = (this.options.env ?? process.env).ACCELERATE_BACKEND?.trim();
    const named = typeof b === 'string' ? b : fromEnv && fromEnv !== 'auto' ? fromEnv : undefined;
    return resolveBackend(named !== undefined ? [named] : undefined);
  }

  /** Per-accelerator state: precision, configuration with provenance, plugins, and the process's world. */
  get state(): AcceleratorState {
    return new AcceleratorState(this.partialState, this.config, this.pluginContainer?.plugins.map((p) => p.name) ?? []);
  }

  private get partialState(): PartialState {
    if (!this.partial) {
      throw new Error(
        'The Accelerator is not ready yet: the device and process group are chosen asynchronously. `await accelerator.ready()` (or `await accelerator.prepare(...)`) before reading this property, or create it with `await Accelerator.create(options)`.',
      );
    }
    PartialState.assertFresh(this.generation, 'This Accelerator');
    return this.partial;
  }

  /** The compute backend. */
  get backend(): Backend<any, any, any, any> {
    return this.partialState.backend;
  }
  get device(): string {
    return this.partialState.device;
  }
  /** Distributed type (FSDP / DEEPSPEED / MEGATRON_LM when requested on a multi-process run). */
  get distributedType(): DistributedType {
    return this.activeStrategy?.distributedType ?? this.state.distributedType;
  }
  /**
   * The active distribution strategy (`single-process`, `DDP`, or the one a
   * plugin provides); chosen at the first `prepare`.
   */
  get strategy(): DistributionStrategy<any, any> {
    if (!this.activeStrategy) {
      throw new Error('The distribution strategy is chosen at the first prepare(): call `await accelerator.prepare(...)` before reading accelerator.strategy.');
    }
    return this.activeStrategy;
  }
  get numProcesses(): number {
    return this.partialState.numProcesses;
  }
  get processIndex(): number {
    return this.partialState.processIndex;
  }
  get localProcessIndex(): number {
    return this.partialState.localProcessIndex;
  }
  get isMainProcess(): boolean {
    return this.partialState.isMainProcess;
  }
  get isLocalMainProcess(): boolean {
    return this.partialState.isLocalMainProcess;
  }
  get isLastProcess(): boolean {
    return this.partialState.isLastProcess;
  }
  get useDistributed(): boolean {
    return this.partialState.useDistributed;
  }
  /** Effective precision. */
  get mixedPrecision(): MixedPrecision {
    return this.config.value('mixedPrecision');
  }
  /** Whether the current micro-step synchronises gradients. */
  get syncGradients(): boolean {
    return this.gradientState.syncGradients;
  }
  set syncGradients(value: boolean) {
    this.gradientState.syncGradients = value;
  }
  get gradientAccumulationSteps(): number {
    return this.gradientState.numSteps;
  }
  set gradientAccumulationSteps(value: number) {
    this.gradientState.numSteps = value;
  }
  /** True when any prepared optimizer skipped its last step (fp16 overflow). */
  get optimizerStepWasSkipped(): boolean {
    return this.optimizers.some((o) => optimizerStepState(o)?.stepWasSkipped ?? false);
  }
  get splitBatches(): boolean {
    return this.dataloaderConfig.splitBatches ?? false;
  }
  get evenBatches(): boolean {
    return this.dataloaderConfig.evenBatches ?? true;
  }
  get projectDir(): string | undefined {
    return this.projectConfiguration.projectDir;
  }
  get loggingDir(): string | undefined {
    return this.projectConfiguration.loggingDir;
  }

  /** Register plugins before the first `prepare` (the configuration freezes there). */
  use(...plugins: PluginOption[]): this {
    if (this.pluginContainer) {
      const names = plugins.flat(Infinity as 1).filter(Boolean).map((p) => `"${(p as { name: string }).name}"`).join(', ');
      throw new Error(
        `Cannot add plugin ${names} after prepare(): the Accelerator's configuration froze at the first prepare. Pass plugins to new Accelerator({ plugins }) or call accelerator.use() before prepare.`,
      );
    }
    this.pluginOptions.push(...plugins);
    return this;
  }

  /** The context hooks of `plugin` receive (a generic one for core's own use when no plugin is given). */
  private pluginContext(plugin?: Plugin): PluginContext {
    const state = this.partialState;
    const values = this.config.values();
    const prefix = plugin ? `[${plugin.name}] ` : '';
    const base = getLogger(plugin ? `accelerate.plugin.${plugin.name}` : 'accelerate.plugins');
    const own = plugin ? this.pluginOptionsOf(plugin) : { options: {}, resolved: this.config };
    return {
      config: values,
      resolvedConfig: own.resolved,
      options: own.options,
      state: this.state,
      backend: state.backend,
      group: state.group,
      newGroup: async (ranks) => {
        if (!state.group) throw new Error(`${prefix}newGroup(): there is no process group on one process.`);
        return state.group.newGroup(ranks);
      },
      logger: prefixedLogger(base, prefix),
      addCheckpointParticipant: (participant) => {
        if (this.pluginParticipants.some((p) => p.name === participant.name)) {
          throw new Error(`${prefix}addCheckpointParticipant: a participant named "${participant.name}" was added already; give each a unique name.`);
        }
        this.pluginParticipants.push(participant);
      },
      processIndex: state.processIndex,
      numProcesses: state.numProcesses,
      device: state.device,
    };
  }

  /**
   * A plugin's own settings: its config section (file, env, flags) over the
   * defaults its `config` hook contributes.
   */
  private pluginOptionsOf(plugin: Plugin): { options: Record<string, unknown>; resolved: ResolvedConfig } {
    let hit = this.pluginOptionCache.get(plugin);
    if (!hit) {
      const defaults = (plugin.config?.(this.config.values()) ?? {}) as Record<string, unknown>;
      const name = plugin.section as SettingSectionName | undefined;
      if (!name || !SETTING_SECTIONS.includes(name)) hit = { options: { ...defaults }, resolved: this.config };
      else {
        // The table's section over the plugin's defaults: file, env, flags and constructor win.
        const resolved = this.config.withPluginDefaults({ [name]: defaults }, plugin.name);
        hit = { options: { ...resolved.sectionValues(name) }, resolved };
      }
      this.pluginOptionCache.set(plugin, hit);
    }
    return hit;
  }
  /** Resolved once per plugin: contexts are built per hook call. */
  private readonly pluginOptionCache = new WeakMap<Plugin, { options: Record<string, unknown>; resolved: ResolvedConfig }>();

  private async plugins(): Promise<PluginContainer> {
    if (!this.pluginContainer) {
      const container = new PluginContainer(this.pluginOptions, this.config.values());
      const ctxOf = (p: Plugin) => this.pluginContext(p);
      await container.notify('configResolved', ctxOf);
      if (this.partialState.group) await container.notify('processGroupReady', ctxOf);
      await this.setupStrategy(container);
      this.pluginContainer = container;
    }
    return this.pluginContainer;
  }

  /**
   * Choose and set up the one distribution strategy: a plugin's, else the
   * installed package the configuration names (`distributed_type: FSDP`, …),
   * else DDP on several processes and `single-process` on one.
   */
  private async setupStrategy(container: PluginContainer): Promise<void> {
    const requested = requestedStrategy(this.config.values());
    let provider = strategyProvider(container.plugins);
    if (!provider && this.configuredStrategyPlugin) {
      provider = this.configuredStrategyPlugin;
      container.add(provider);
      await container.notifyOne(provider, 'configResolved', this.pluginContext(provider));
      if (this.partialState.group) await container.notifyOne(provider, 'processGroupReady', this.pluginContext(provider));
    }
    let strategy: DistributionStrategy<any, any>;
    if (provider) {
      const s = provider.strategy!;
      strategy = typeof s === 'function' ? await s(this.pluginContext(provider)) : s;
      if (requested && strategy.distributedType !== requested) {
        throw new Error(
          `The configuration asks for ${requested}, but plugin "${provider.name}" provides the "${strategy.name}" strategy (${strategy.distributedType ?? 'data parallel'}). ` +
            `Remove distributed_type: ${requested} (or --use_${requested.toLowerCase()}) from the configuration, or use the plugin for ${requested}.`,
        );
      }
    } else {
      strategy = this.useDistributed ? ddpStrategy({ ...this.handlers.ddp?.fields }) : singleProcessStrategy();
    }
    const backend = this.backend;
    for (const capability of strategy.requires ?? []) {
      requireCapability(backend, capability, `The "${strategy.name}" strategy${provider ? ` (plugin "${provider.name}")` : ''}`);
    }
    const state = this.partialState;
    const ctx: StrategyContext<any> = {
      backend,
      group: state.group,
      processIndex: state.processIndex,
      numProcesses: state.numProcesses,
      device: state.device,
      logger: prefixedLogger(getLogger(`accelerate.strategy.${strategy.name}`), `[${strategy.name}] `),
    };
    await strategy.setup?.(ctx);
    this.activeStrategy = strategy;
    this.strategyCtx = ctx;
  }

  /**
   * Prepare models, optimizers, data loaders and schedulers for the run, and
   * return them in the order given (a single object is returned as-is in a
   * one-element tuple). Loaders, models and optimizers are prepared first,
   * then schedulers, so a scheduler finds its prepared optimizer. Objects of
   * other kinds pass through unchanged. An object prepared before (given
   * again as the original or as the prepared result) comes back as the first
   * result, not wrapped or tracked a second time.
   */
  async prepare<T extends readonly unknown[]>(...objects: T): Promise<Prepared<T>> {
    await this.ready();
    const backend = this.backend;
    const plugins = await this.plugins();
    const models = requireCapability(backend, 'models', 'Accelerator.prepare');
    const optimizers = requireCapability(backend, 'optimizers', 'Accelerator.prepare');
    const out: unknown[] = [...objects];
    const done = new Set<number>();
    // Models first, so a strategy that adapts optimizers to wrapped models
    // (FSDP points them at parameter shards) sees the models of this call.
    for (let i = 0; i < out.length; i++) {
      const obj = out[i];
      const existing = this.alreadyPrepared(obj);
      if (existing !== undefined) out[i] = existing;
      else if (models.isModel(obj)) out[i] = await this.prepareModel(obj, plugins);
      else continue;
      done.add(i);
    }
    for (let i = 0; i < out.length; i++) {
      if (done.has(i)) continue;
      const obj = out[i];
      const existing = this.alreadyPrepared(obj);
      if (existing !== undefined) out[i] = existing;
      else if (obj instanceof DataLoader) out[i] = await this.prepareDataLoaderInternal(obj, plugins);
      else if (optimizers.isOptimizer(obj)) out[i] = await this.prepareOptimizer(obj as object, plugins);
    }
    for (let i = 0; i < out.length; i++) {
      const obj = out[i];
      if (this.preparedOutputs.has(obj as object)) continue; // prepared above or earlier
      if (optimizers.isScheduler?.(obj)) out[i] = await this.prepareScheduler(obj as object, plugins);
    }
    return out as unknown as Prepared<T>;
  }

  /**
   * The object an earlier `prepare` returned for `obj` (or `obj` itself when it
   * is such a result), else undefined. Preparing twice would wrap twice and
   * count the object twice in `models`/`optimizers` (saved twice, stepped
   * twice); Python Accelerate does that, accelerate-ts returns the first result.
   */
  private alreadyPrepared(obj: unknown): unknown {
    if ((typeof obj !== 'object' && typeof obj !== 'function') || obj === null) return undefined;
    const hit = this.preparedOutputs.has(obj) ? obj : this.preparedFrom.get(obj);
    if (hit === undefined) return undefined;
    const log = getLogger('accelerate.accelerator');
    if (log.isEnabledFor('debug')) {
      log.debug(
        `prepare(): ${obj === hit ? 'this object is already the result of prepare' : 'this object was already prepared'}; returning the prepared ${this.kindOf(hit)} instead of wrapping and tracking it again.`,
      );
    }
    return hit;
  }

  private kindOf(prepared: unknown): string {
    if (this.models.includes(prepared)) return 'model';
    if (this.optimizers.includes(prepared)) return 'optimizer';
    if (this.schedulers.includes(prepared)) return 'scheduler';
    return 'data loader';
  }

  /** Remembers a prepare result and its source, for {@link alreadyPrepared}. */
  private remember<R>(source: unknown, result: R): R {
    if (typeof result === 'object' && result !== null) this.preparedOutputs.add(result);
    if (typeof source === 'object' && source !== null && typeof result === 'object' && result !== null) this.preparedFrom.set(source, result);
    return result;
  }

  /**
   * Prepare one model: plugins' `prepareModel` hooks, device placement, the
   * precision wrapper, then the distribution strategy's `wrapModel` (DDP by
   * default on several processes).
   */
  async prepareModel<M>(model: M, plugins?: PluginContainer): Promise<M> {
    await this.ready();
    const existing = this.alreadyPrepared(model);
    if (existing !== undefined) return existing as M;
    plugins ??= await this.plugins();
    const backend = this.backend as Backend<unknown, M>;
    const models = requireCapability(backend, 'models', 'Accelerator.prepare(model)');
    let m = (await plugins.transform('prepareModel', model, (p) => this.pluginContext(p))) as M;
    if (this.devicePlacement) models.moveModel(m, this.device);
    const precision = backend.precision;
    if (this.mixedPrecision !== 'no' && precision?.wrapForwardForPrecision) m = precision.wrapForwardForPrecision(m, this.mixedPrecision);
    m = (await this.strategy.wrapModel(m, this.strategyCtx!)) as M;
    this.models.push(m);
    return this.remember(model, m);
  }

  /** Prepare one optimizer (see {@link wrapOptimizer}). */
  async prepareOptimizer<O extends object>(optimizer: O, plugins?: PluginContainer): Promise<O> {
    await this.ready();
    const existing = this.alreadyPrepared(optimizer);
    if (existing !== undefined) return existing as O;
    plugins ??= await this.plugins();
    let o: O = (await plugins.transform('prepareOptimizer', optimizer, (p) => this.pluginContext(p))) as O;
    const strategy = this.strategy;
    if (strategy.prepareOptimizer) o = (await strategy.prepareOptimizer(o, this.models, this.strategyCtx!)) as O;
    if (this.devicePlacement) this.backend.optimizers?.moveState?.(o, this.device);
    const container = plugins;
    const wrapped = wrapOptimizer(o, this.backend, {
      scaler: this.scaler,
      onStep: (raw) => container.claim('optimizerStep', raw, (p) => this.pluginContext(p)),
      afterStep: strategy.afterOptimizerStep ? () => strategy.afterOptimizerStep!(this.models, this.strategyCtx!) : undefined,
    });
    this.optimizers.push(wrapped);
    return this.remember(optimizer, wrapped);
  }

  /** Prepare one scheduler, bound to the prepared optimizer it drives (or all). */
  async prepareScheduler<S extends object>(scheduler: S, plugins?: PluginContainer): Promise<S> {
    await this.ready();
    const existing = this.alreadyPrepared(scheduler);
    if (existing !== undefined) return existing as S;
    plugins ??= await this.plugins();
    const s = await plugins.transform('prepareScheduler', scheduler, (p) => this.pluginContext(p));
    const target = this.backend.optimizers?.schedulerOptimizer?.(s);
    const bound = () => {
      const match = this.optimizers.filter((o) => unwrapPrepared(o) === target);
      return match.length > 0 ? match : this.optimizers;
    };
    const wrapped = wrapScheduler(s, this.backend, {
      optimizers: bound,
      stepWithOptimizer: this.stepSchedulerWithOptimizer,
      splitBatches: this.splitBatches,
      numProcesses: this.numProcesses,
    });
    this.schedulers.push(wrapped);
    return this.remember(scheduler, wrapped);
  }

  private async prepareDataLoaderInternal<T, B>(loader: DataLoader<T, B>, plugins: PluginContainer): Promise<PreparedDataLoader<T, B>> {
    if (loader instanceof PreparedDataLoader) return loader; // already prepared: re-preparing is a no-op, as in Accelerate
    const existing = this.alreadyPrepared(loader);
    if (existing !== undefined) return existing as PreparedDataLoader<T, B>;
    const l = (await plugins.transform('prepareDataLoader', loader, (p) => this.pluginContext(p))) as DataLoader<T, B>;
    const backend = this.backend;
    const device = this.device;
    const prepared = prepareDataLoader(l, {
      numProcesses: this.numProcesses,
      processIndex: this.processIndex,
      splitBatches: this.splitBatches,
      evenBatches: this.evenBatches,
      dispatchBatches: this.dataloaderConfig.dispatchBatches,
      useSeedableSampler: this.dataloaderConfig.useSeedableSampler,
      dataSeed: this.dataloaderConfig.dataSeed,
      putOnDevice: this.devicePlacement,
      rngTypes: ['generator'],
      group: this.partialState.group,
      deviceTransform: this.devicePlacement ? (batch: B) => sendToDevice(batch, device, backend, {}) as B : undefined,
    });
    this.dataloaders.push(prepared);
    return this.remember(loader, prepared);
  }

  /** Prepare a data loader alone (Accelerate's `prepare_data_loader`). */
  async prepareDataLoader<T, B>(loader: DataLoader<T, B>): Promise<PreparedDataLoader<T, B>> {
    await this.ready();
    return this.prepareDataLoaderInternal(loader, await this.plugins());
  }

  /**
   * Backpropagate `loss`, divided by the accumulation steps (and multiplied by
   * the fp16 loss scale). A loss closure is accepted for backends that compute
   * gradients from a function (tfjs). Returns the backend's promise when its
   * gradients become usable later (tfjs across processes): `await` it before
   * `optimizer.step()` for code that must run on every backend.
   */
  backward<T>(loss: Loss<T>): void | Promise<void> {
    const plugins = this.pluginContainer;
    // The context is built only when a plugin has a backward hook (this runs every step).
    if (plugins?.claim('backward', loss, (p) => this.pluginContext(p))) return;
    const scale = (1 / this.gradientState.numSteps) * (this.scaler ? this.scaler.getScale() : 1);
    return requireCapability(this.backend, 'autograd', 'Accelerator.backward').backward(loss, { scale });
  }

  /**
   * Run one micro-step of gradient accumulation: decides whether this step
   * syncs (every `gradientAccumulationSteps` steps and on the loader's last
   * batch) and, when it does not, turns off gradient all-reduce on `models`
   * for the duration of `fn`. Prepared optimizers and schedulers skip their
   * steps on non-sync micro-steps by themselves.
   */
  async accumulate<R>(models: unknown, fn: () => R | Promise<R>): Promise<R> {
    await this.ready();
    this.gradientState.advance();
    const list = Array.isArray(models) ? models : [models];
    const distributed = this.useDistributed;
    const skipSync = distributed && !this.syncGradients && !this.gradientState.syncEachBatch;
    return this.withGradientSync(list, !skipSync, fn);
  }

  /**
   * Make the next backward of `model` synchronise gradients even inside
   * `noSync` / a non-sync accumulate step (no-op on one process).
   */
  triggerSyncInBackward(model: unknown): void {
    if (!this.useDistributed) return;
    const strategy = this.strategy;
    if (!strategy.triggerSyncInBackward) {
      throw new Error(`The "${strategy.name}" strategy cannot force a gradient sync in backward (triggerSyncInBackward).`);
    }
    strategy.triggerSyncInBackward(model);
  }

  /** Run `fn` with gradient synchronisation of `model` turned off (DDP's `no_sync`). No-op on one process. */
  async noSync<R>(model: unknown, fn: () => R | Promise<R>): Promise<R> {
    await this.ready();
    return this.withGradientSync([model], !this.useDistributed, fn);
  }

  private async withGradientSync<R>(models: unknown[], sync: boolean, fn: () => R | Promise<R>): Promise<R> {
    const strategy = this.activeStrategy;
    if (sync || !strategy?.setGradientSync) return fn();
    for (const m of models) strategy.setGradientSync(m, false);
    try {
      return await fn();
    } finally {
      for (const m of models) strategy.setGradientSync(m, true);
    }
  }

  /**
   * Run `fn` (a training or evaluation loop) when processes may have different
   * numbers of batches (Accelerate's `join_uneven_inputs`): with `evenBatches`
   * false (the Accelerator's, or `options.evenBatches`, which overrides every
   * prepared map-style loader's inside `fn`), a process that runs out of batches
   * keeps matching the others' gradient all-reduces with zeros until all are
   * done, so none hangs; gradients are divided by the initial world size unless
   * `divideByInitialWorldSize` is false. No-op on one process; warns and no-ops
   * without DDP. See {@link JoinUnevenInputsOptions} and the backend's limits.
   */
  joinUnevenInputs<R>(models: unknown, options: JoinUnevenInputsOptions | (() => R | Promise<R>), fn?: () => R | Promise<R>): Promise<R> {
    return typeof options === 'function' ? joinUnevenInputsImpl(this, models, {}, options) : joinUnevenInputsImpl(this, models, options, fn!);
  }

  /** Run `fn` with autocast for this accelerator's precision (or disabled with `{ enabled: false }`). */
  autocast<R>(fn: () => R, options: { enabled?: boolean } = {}): R {
    const precision = this.backend.precision;
    const enabled = options.enabled ?? this.handlers.autocast?.fields.enabled ?? true;
    if (this.mixedPrecision === 'no' || !precision?.autocast) return fn();
    return precision.autocast(this.mixedPrecision, fn, { enabled });
  }

  /** Divide fp16-scaled gradients by the loss scale (no-op otherwise). */
  unscaleGradients(optimizer?: unknown): void {
    if (!this.scaler) return;
    const opts = optimizer ? [optimizer] : this.optimizers;
    for (const o of opts) this.scaler.unscale(unwrapPrepared(o));
  }

  /**
   * Clip the global norm of `parameters` (tensors, or a model whose parameters
   * are taken) to `maxNorm`; returns the norm before clipping. Unscales fp16
   * gradients first. A sharded strategy computes the norm across ranks and
   * returns a promise (`await` the result to be portable across strategies).
   */
  clipGradNorm(parameters: unknown, maxNorm: number, normType = 2): number | Promise<number> {
    this.unscaleGradients();
    const params = this.paramList(parameters);
    const strategy = this.activeStrategy;
    if (strategy?.clipGradNorm) return strategy.clipGradNorm(params, maxNorm, normType);
    return requireCapability(this.backend, 'autograd', 'Accelerator.clipGradNorm').clipGradNorm(params, maxNorm, normType);
  }

  /** Clamp every gradient element of `parameters` into `[-clipValue, clipValue]`. */
  clipGradValue(parameters: unknown, clipValue: number): void {
    const autograd = requireCapability(this.backend, 'autograd', 'Accelerator.clipGradValue');
    if (!autograd.clipGradValue) throw new Error(`The "${this.backend.name}" backend does not implement autograd.clipGradValue.`);
    this.unscaleGradients();
    autograd.clipGradValue(this.paramList(parameters), clipValue);
  }

  private paramList(parameters: unknown): unknown[] {
    const backend = this.backend;
    const models = backend.models;
    if (models?.isModel(parameters)) return models.namedParameters(parameters).map(([, p]) => p);
    if (Array.isArray(parameters)) return parameters;
    return [...(parameters as Iterable<unknown>)];
  }

  /**
   * The model's weights as host tensors, by name, with every wrapper removed
   * (Accelerate's `get_state_dict`), in the backend's checkpoint (torch) layout
   * when it has one (`Backend.checkpointStateDict`). Tied weights (one tensor under two
   * names) map to the same HostTensor so savers can de-duplicate them.
   */
  async getStateDict(model: unknown): Promise<Record<string, HostTensor>> {
    const strategy = this.activeStrategy;
    if (strategy?.stateDict) return strategy.stateDict(unwrapPrepared(model), { type: 'full' });
    return this.localStateDict(model);
  }

  /** The full state dict of a model every rank holds whole (no strategy involved). */
  private localStateDict(model: unknown): Record<string, HostTensor> {
    const backend = this.backend;
    const models = requireCapability(backend, 'models', 'getStateDict');
    const unwrapped = this.unwrapModel(model);
    // Backends whose own layout is not torch's convert here, so Python and libtorch can load the file.
    if (models.checkpointStateDict) return models.checkpointStateDict(unwrapped);
    const sd = models.stateDict(unwrapped);
    const seen = new Map<unknown, HostTensor>();
    const out: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(sd)) {
      let h = seen.get(t);
      if (!h) seen.set(t, (h = backend.toHost(t)));
      out[name] = h;
    }
    return out;
  }

  /**
   * Save the model's weights to `dir` exactly as Accelerate does:
   * `model.safetensors`, or `model-0000k-of-0000n.safetensors` shards plus
   * `model.safetensors.index.json` when larger than `maxShardSize` (default
   * "10GB"); stale shards of an earlier save are removed. Only the main
   * process writes; every process waits for it.
   */
  async saveModel(model: unknown, dir: string, options: Omit<SaveModelOptions, 'isMainProcess'> = {}): Promise<SaveModelResult> {
    await this.ready();
    const stateDict = await this.getStateDict(model);
    const result = await saveModelFiles(stateDict, dir, { ...options, isMainProcess: this.isMainProcess });
    await this.waitForEveryone();
    return result;
  }

  // ---- checkpoints: saveState / loadState ---------------------------------------

  private readonly customObjects: unknown[] = [];
  private readonly saveStateHooks = new HookRegistry<SaveStateHook>();
  private readonly loadStateHooks = new HookRegistry<LoadStateHook>();

  /**
   * Register objects whose state `saveState` stores and `loadState` restores
   * (`custom_checkpoint_<i>.json`, in registration order). Each needs
   * `stateDict()` and `loadStateDict(state)`; the error lists every object
   * that lacks them by index and type.
   */
  registerForCheckpointing(...objects: unknown[]): void {
    checkCheckpointable(objects);
    this.customObjects.push(...objects);
  }

  /**
   * Run `hook(models, weights, dir)` at the start of every `saveState`, on
   * every process (Accelerate's `register_save_state_pre_hook`). It may write
   * extra files into `dir` (the temporary folder that becomes the
   * checkpoint) and remove entries of `weights` to save those models itself.
   */
  registerSaveStateHook(hook: SaveStateHook): RemovableHandle {
    return this.saveStateHooks.add(hook);
  }

  /**
   * Run `hook(models, dir)` at the start of every `loadState`, on every
   * process (Accelerate's `register_load_state_pre_hook`). It may remove
   * entries of `models` to load those itself.
   */
  registerLoadStateHook(hook: LoadStateHook): RemovableHandle {
    return this.loadStateHooks.add(hook);
  }

  private checkpointHost(): CheckpointHost {
    const self = this;
    return {
      backend: this.backend,
      processIndex: this.processIndex,
      numProcesses: this.numProcesses,
      isMainProcess: this.isMainProcess,
      models: this.models,
      optimizers: this.optimizers.map((o) => unwrapPrepared(o)),
      schedulers: this.schedulers.map((s) => unwrapPrepared(s)),
      dataloaders: this.dataloaders,
      scaler: this.scaler,
      customObjects: this.customObjects,
      plugins: this.pluginContainer?.plugins ?? [],
      pluginContext: this.pluginContext(),
      pluginContextOf: (p) => this.pluginContext(p),
      participants: this.pluginParticipants,
      strategy: this.activeStrategy,
      strategyContext: this.strategyCtx,
      saveHooks: this.saveStateHooks.values(),
      loadHooks: this.loadStateHooks.values(),
      projectConfiguration: this.projectConfiguration,
      configValues: this.config.values(),
      accumulationStep: this.gradientState.step,
      accumulationSteps: this.gradientState.numSteps,
      get step() {
        return self.step;
      },
      set step(v: number) {
        self.step = v;
      },
      getStateDict: (m) => this.getStateDict(m),
      unwrapModel: (m) => this.unwrapModel(m),
      gatherObject: <E>(obj: E[]) => this.gatherObject<E>(obj),
    };
  }

  /**
   * Save everything needed to resume the run exactly into a checkpoint
   * folder, and return its path. Files (Accelerate's names; pickles replaced
   * by safetensors + JSON): `model.safetensors` (`model_1.safetensors`, …),
   * `optimizer.json` + `optimizer.safetensors`, `scheduler.json`,
   * `dl_state_dict.json` (each prepared loader's world-size independent
   * position), `scaler.json`, `custom_checkpoint_<i>.json`,
   * `random_states_<rank>.json` + `.safetensors` (per rank: backend RNG,
   * core's data generator, step), `plugins/<name>/` and a versioned
   * `manifest.json` with the sha256 and size of every file.
   *
   * With `ProjectConfiguration.automaticCheckpointNaming` the folder is
   * `<projectDir>/checkpoints/checkpoint_<iteration>` (`outputDir` is
   * ignored; an existing folder is an error) and at most `totalLimit`
   * checkpoints are kept, oldest deleted first. `iteration` grows by one on
   * every save.
   *
   * Atomic: every rank writes into a hidden temporary sibling folder; after a
   * barrier the main process writes the manifest and renames the folder into
   * place (an existing checkpoint there is replaced only once the new one is
   * complete). A crash mid-save leaves the previous checkpoint intact.
   * Because the folder is replaced as a whole, a folder that holds other files
   * (not listed in its manifest) is refused with an error instead of being
   * emptied (Python writes into it; we never delete what we did not write).
   * Assumes every rank sees the same file system. Call it on every process,
   * right after an optimizer step.
   */
  async saveState(outputDir?: string, options: SaveStateOptions = {}): Promise<string> {
    await this.ready();
    await this.plugins();
    return saveAcceleratorState(this.checkpointHost(), outputDir, options);
  }

  /**
   * Restore a checkpoint written by {@link saveState}: models, optimizers,
   * schedulers, data loader positions, loss scaler, registered objects,
   * plugin namespaces, this rank's RNG states and `step`. Without `inputDir`
   * and with automatic naming, the newest valid checkpoint is loaded: an
   * empty, partial or damaged newer `checkpoint_<n>` is skipped with a warning
   * saying which and why (and `iteration` moves past all of them, so the next
   * save does not collide).
   *
   * Every file is read, checked against the manifest and parsed before any
   * object changes, so a damaged or unreadable file (named in the error)
   * leaves the run as it was. A checkpoint without a position for a data
   * loader (e.g. one imported from Python) starts that loader at the
   * beginning of its epoch, with a warning. A checkpoint from another number of
   * processes loads (the data position is world-size independent); RNG
   * states of ranks that did not exist are reported as warnings (errors with
   * `strict`). Call it on every process, after `prepare`.
   */
  async loadState(inputDir?: string, options: LoadStateOptions = {}): Promise<LoadStateResult> {
    await this.ready();
    await this.plugins();
    return loadAcceleratorState(this.checkpointHost(), inputDir, options);
  }

  /**
   * Undo `prepare`'s wrappers (the strategy's, the optimizer proxy). The
   * mixed-precision forward (autocast + fp32 outputs) stays unless
   * `keepFp32Wrapper` is false, as in Accelerate.
   */
  unwrapModel<M>(model: M, options: { keepFp32Wrapper?: boolean } = {}): M {
    let m = unwrapPrepared(model);
    const strategy = this.activeStrategy;
    if (strategy?.unwrapModel) m = strategy.unwrapModel(m);
    if (options.keepFp32Wrapper === false) m = this.backend.precision?.unwrapForwardForPrecision?.(m) ?? m;
    return m as M;
  }

  // ---- collectives --------------------------------------------------------------

  private collectiveContext(): CollectiveContext<any> {
    const s = this.partialState;
    return { group: s.group, ops: s.backend, numProcesses: s.numProcesses, processIndex: s.processIndex, debug: s.debug, device: s.device, hostTransport: s.backend.hostTransport };
  }

  /** Gather tensors (nested structures allowed) from every process, concatenated on dim 0 in rank order. */
  async gather<D>(data: D): Promise<D> {
    await this.ready();
    return gatherOp(data, this.collectiveContext());
  }

  /** Gather any JSON-serialisable objects from every process (lists are flattened one level). */
  async gatherObject<E>(obj: E | E[]): Promise<E[]> {
    await this.ready();
    return gatherObjectOp(obj, this.collectiveContext());
  }

  /**
   * Gather for metrics: like {@link gather}, but on the active loader's last
   * batch the samples that even-batches padding duplicated are dropped, so
   * every sample counts exactly once.
   */
  async gatherForMetrics<D>(data: D, options: { useGatherObject?: boolean } = {}): Promise<D> {
    await this.ready();
    const ops = this.backend;
    const isTensorLeaf = (x: unknown): boolean => ops.isTensor(x) || isHostTensor(x);
    const allTensors = (x: unknown): boolean =>
      isTensorLeaf(x) || (Array.isArray(x) ? x.every(allTensors) : isPlainObject(x) ? Object.values(x as object).every(allTensors) : false);
    const useObject = options.useGatherObject ?? !allTensors(data);
    const gathered = (useObject ? await this.gatherObject(data) : await this.gather(data)) as D;
    if (!this.gradientState.endOfDataloader) return gathered;
    const remainder = this.gradientState.remainder;
    if (remainder <= 0) return gathered;
    // Objects were gathered into one flat list; tensors (also a tuple or dict of them,
    // e.g. `[predictions, references]`) are each cut on dim 0.
    if (useObject) return (gathered as unknown[]).slice(0, remainder) as D;
    return sliceTensors(gathered, 0, remainder, ops);
  }

  /** Reduce tensors across processes: `sum`, `mean` or `max`, then multiply by `scale`. */
  async reduce<D>(data: D, reduction: Reduction = 'sum', scale = 1): Promise<D> {
    await this.ready();
    return reduceOp(data, this.collectiveContext(), reduction, scale);
  }

  /** Copy `from`'s tensors to every process. */
  async broadcast<D>(data: D, from = 0): Promise<D> {
    await this.ready();
    return broadcastOp(data, this.collectiveContext(), from);
  }

  /** Pad tensors on `dim` to the largest size across processes, so they can be gathered. */
  async padAcrossProcesses<D>(data: D, options: PadAcrossProcessesOptions = {}): Promise<D> {
    await this.ready();
    return padOp(data, this.collectiveContext(), options);
  }

  /** This process's share of `inputs` (lists, tensors, dicts of those). */
  splitBetweenProcesses<D>(inputs: D, applyPadding = false): D {
    const s = this.partialState;
    return splitOp(inputs, { numProcesses: s.numProcesses, processIndex: s.processIndex, applyPadding, ops: s.backend });
  }

  /** Barrier: resolves once every process got here. */
  async waitForEveryone(): Promise<void> {
    await this.ready();
    await this.partialState.waitForEveryone();
  }

  /** Run `fn` on the main process first, then on the others. */
  async mainProcessFirst<R>(fn: () => R | Promise<R>): Promise<R> {
    return this.firstOn(this.isMainProcess, fn);
  }

  /** Run `fn` on each machine's local main process first, then on that machine's others. */
  async localMainProcessFirst<R>(fn: () => R | Promise<R>): Promise<R> {
    return this.firstOn(this.isLocalMainProcess, fn);
  }

  private async firstOn<R>(isFirst: boolean, fn: () => R | Promise<R>): Promise<R> {
    await this.ready();
    if (!isFirst) await this.waitForEveryone();
    const r = await fn();
    if (isFirst) await this.waitForEveryone();
    return r;
  }

  /** `fn` wrapped to run only on the main process (elsewhere it returns undefined). */
  onMainProcess<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R | undefined {
    return (...args) => (this.isMainProcess ? fn(...args) : undefined);
  }
  /** `fn` wrapped to run only on each machine's local main process. */
  onLocalMainProcess<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R | undefined {
    return (...args) => (this.isLocalMainProcess ? fn(...args) : undefined);
  }
  /** `fn` wrapped to run only on the last process. */
  onLastProcess<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R | undefined {
    return (...args) => (this.isLastProcess ? fn(...args) : undefined);
  }
  /** `fn` wrapped to run only on global rank `processIndex`. */
  onProcess<A extends unknown[], R>(fn: (...args: A) => R, processIndex: number): (...args: A) => R | undefined {
    return (...args) => (this.processIndex === processIndex ? fn(...args) : undefined);
  }
  /** `fn` wrapped to run only on local rank `localProcessIndex` of each machine. */
  onLocalProcess<A extends unknown[], R>(fn: (...args: A) => R, localProcessIndex: number): (...args: A) => R | undefined {
    return (...args) => (this.localProcessIndex === localProcessIndex ? fn(...args) : undefined);
  }

  /** `console.log` once per machine (on the local main process). */
  print(...args: unknown[]): void {
    if (this.isLocalMainProcess) console.log(...args);
  }

  /** Raise a flag on this process that {@link checkTrigger} sees on every process (e.g. early stopping). */
  setTrigger(): void {
    this.triggerFlag = true;
  }

  /** True on every process if any process called {@link setTrigger} since the last check; resets the flag. */
  async checkTrigger(): Promise<boolean> {
    await this.ready();
    const flag = new Int32Array([this.triggerFlag ? 1 : 0]);
    if (this.partialState.group) await this.partialState.group.allReduce(flag, 'sum').wait();
    if (flag[0] > 0) {
      this.triggerFlag = false;
      return true;
    }
    return false;
  }

  /** A loader that skips its first `numBatches` batches (for resuming mid-epoch). */
  skipFirstBatches<T, B>(loader: DataLoader<T, B>, numBatches: number): DataLoader<T, B> {
    return skipFirstBatchesImpl(loader, numBatches);
  }

  /**
   * Run `fn(batchSize)` starting at `startingBatchSize`, and on an
   * out-of-memory error (as the backend recognises it) retry with 90 % of it.
   */
  findExecutableBatchSize<A extends unknown[], R>(fn: (batchSize: number, ...args: A) => R, startingBatchSize = 128): (...args: A) => R {
    const backend = this.partial?.backend;
    return findBatchSizeImpl(fn, {
      startingBatchSize,
      isOutOfMemoryError: backend?.memory ? (e: unknown) => backend.memory!.isOutOfMemoryError(e) : undefined,
      clearCache: () => backend?.memory?.emptyCache?.(),
    });
  }

  /** Forget prepared objects and reset step counters (Accelerate's `free_memory`). */
  freeMemory(): void {
    this.models.length = 0;
    this.optimizers.length = 0;
    this.schedulers.length = 0;
    this.dataloaders.length = 0;
    this.step = 0;
    this.partial?.backend.memory?.emptyCache?.();
  }

  // ---- trackers -----------------------------------------------------------------

  /** Start the trackers (main process only, unless a tracker logs on every rank) and record `config`. */
  async initTrackers(projectName: string, config: Record<string, unknown> = {}, initKwargs: Record<string, Record<string, unknown>> = {}): Promise<void> {
    await this.ready();
    await this.trackerHub.initTrackers(projectName, config, initKwargs);
  }

  /** Log metrics at `step` to every tracker. Never throws: bad values and failing trackers are warned about. */
  log(values: Record<string, unknown>, step?: number, logKwargs?: Record<string, Record<string, unknown>>): Promise<void> {
    return this.trackerHub.log(values, step, logKwargs);
  }

  /** A tracker by name (a blank one on processes that do not log). */
  getTracker(name: string): Tracker {
    return this.trackerHub.getTracker(name);
  }

  /** Active trackers. */
  get trackers(): Tracker[] {
    return this.trackerHub.trackers;
  }

  /** Finish the run: trackers and plugins' teardown; in a distributed run every process waits for the others. */
  async endTraining(): Promise<void> {
    await this.trackerHub.endTraining();
    if (this.pluginContainer && this.partial) {
      await this.pluginContainer.notify('teardown', (p) => this.pluginContext(p));
      await this.activeStrategy?.teardown?.();
    }
    if (this.partial?.group) await this.waitForEveryone();
  }
}

/** A logger whose messages start with `prefix` (`[fsdp] `). */
function prefixedLogger(base: ReturnType<typeof getLogger>, prefix: string): ReturnType<typeof getLogger> {
  if (!prefix) return base;
  return new Proxy(base, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver);
      if (typeof v !== 'function') return v;
      if (key === 'log') return (level: never, message: string, options?: never) => v.call(target, level, prefix + message, options);
      if (['debug', 'info', 'warning', 'warn', 'error', 'critical'].includes(key as string)) {
        return (message: string, options?: never) => v.call(target, prefix + message, options);
      }
      return v.bind(target);
    },
  });
}
