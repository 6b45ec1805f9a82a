/**
 * What `Accelerator.saveState` / `loadState` do, written against a small
 * {@link CheckpointHost} view of the Accelerator so the logic lives with the
 * checkpoint code.
 *
 * Layout of a checkpoint folder (Accelerate's names; `_i` suffixes for the
 * i-th object after the first):
 *
 * ```text
 * checkpoint/
 * ├── manifest.json                      format version, world size, config hash, step, sha256 + size of every file
 * ├── model.safetensors                  weights of model 0 (model_1.safetensors, …)
 * ├── optimizer.json                     optimizer 0: structure and hyper-parameters (optimizer_1.json, …)
 * ├── optimizer.safetensors              optimizer 0: its state tensors (moments), when it has any
 * ├── scheduler.json                     scheduler 0 (scheduler_1.json, …)
 * ├── dl_state_dict.json                 prepared data loader 0's position (world-size independent)
 * ├── scaler.json                        fp16 loss scaler, when there is one
 * ├── custom_checkpoint_0.json           objects passed to registerForCheckpointing (+ .safetensors when they hold tensors)
 * ├── random_states_0.json               rank 0: step, core's data generator, accumulation counter
 * ├── random_states_0.safetensors        rank 0: the backend's RNG state bytes
 * ├── random_states_1.json / .safetensors    one pair per rank
 * └── plugins/<name>/…                   each plugin's own namespace
 * ```
 *
 * Saving is atomic (see the atomic module): every rank writes into
 * `.<name>.tmp-<pid of rank 0>`, rank 0 hashes the files, writes the manifest
 * last and renames the folder into place after everyone finished.
 * @module
 */
import * as fsp from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { requireCapability, type Backend, type GradScaler } from '../interfaces/backend.js';
import type { CheckpointParticipant } from '../interfaces/checkpoint.js';
import type { DistributionStrategy } from '../interfaces/strategy.js';
import type { Plugin, PluginContext, PluginHook } from '../interfaces/plugin.js';
import { HostTensor } from '../tensor/host-tensor.js';
import { defaultGenerator, type GeneratorState } from '../data/random.js';
import { parseSafetensors, writeSafetensors } from './safetensors.js';
import { checkpointBar, removeSharedTensors } from './save-model.js';
import type { ProgressBarOptions } from '../utils/progress.js';
import { dtypeElementBytes } from '../tensor/host-tensor.js';
import {
  commitCheckpointDir,
  leftoverSiblings,
  listFilesRecursive,
  pathExists,
  recoverInterruptedReplace,
  tempCheckpointDir,
  writeFileDurable,
} from './atomic.js';
import {
  CheckpointError,
  MANIFEST_FORMAT,
  MANIFEST_NAME,
  MANIFEST_VERSION,
  accelerateTsVersion,
  hashFile,
  readManifest,
  readVerified,
  sha256Hex,
  stableStringify,
  verifyFile,
  type CheckpointManifest,
  type ManifestFileEntry,
} from './manifest.js';
import { decodeState, encodeState, encodeStateTensors, modelFileName, stateFileNames, type StateKind, type StateValue } from './state.js';

/** Folder automatic checkpoint naming writes into, below `projectDir`. */
export const CHECKPOINTS_DIR = 'checkpoints';
/** Name pattern of automatically named checkpoints. */
export const CHECKPOINT_NAME_PATTERN = /^checkpoint_(\d+)$/;
/** Sub-folder holding the plugins' namespaces. */
export const PLUGINS_DIR = 'plugins';
/** Test-only: milliseconds to sleep after each file a save writes (lets tests kill a process mid-save). */
export const SAVE_DELAY_ENV = 'ACCELERATE_TS_TEST_SAVE_DELAY_MS';

/**
 * Runs before the state is written, on every process (Accelerate's
 * `register_save_state_pre_hook`): `models` are the prepared models,
 * `weights` their host state dicts, `dir` the (temporary) folder being
 * written. A hook may save extra files into `dir` and may remove entries of
 * `weights` to save those models itself; the remaining ones are written as
 * `model.safetensors`, `model_1.safetensors`, … in order.
 */
export type SaveStateHook = (models: unknown[], weights: Array<Record<string, HostTensor>>, dir: string) => void | Promise<void>;

/**
 * Runs before the state is loaded, on every process (Accelerate's
 * `register_load_state_pre_hook`). A hook may remove entries of `models` to
 * load those itself; the remaining ones load `model.safetensors`, … in order.
 */
export type LoadStateHook = (models: unknown[], dir: string) => void | Promise<void>;

/** What `register*StateHook` returns: `remove()` unregisters the hook. */
export interface RemovableHandle {
  /** Unregister the hook (idempotent). */
  remove(): void;
  /** Id of the hook, unique per registry. */
  readonly id: number;
}

/** An ordered set of hooks with removable handles (PyTorch's `RemovableHandle` pattern). */
export class HookRegistry<F> {
  private readonly hooks = new Map<number, F>();
  private nextId = 0;
  /** Add `hook`; it runs after those added before it. */
  add(hook: F): RemovableHandle {
    const id = this.nextId++;
    this.hooks.set(id, hook);
    return { id, remove: () => void this.hooks.delete(id) };
  }
  /** Hooks in registration order. */
  values(): F[] {
    return [...this.hooks.values()];
  }
}

/** Options of `Accelerator.saveState`. */
export interface SaveStateOptions {
  /**
   * Must stay `true` (the default): model weights go to `model.safetensors`.
   * Pickle files (`pytorch_model.bin`) are not written by accelerate-ts.
   */
  safeSerialization?: boolean;
  /**
   * Progress bar (bytes of model weights written) on the main process, as
   * `SaveModelOptions.progress`: by default only for big checkpoints
   * (> 256 MiB or 8+ model files), on a terminal, not under CI.
   */
  progress?: boolean | ProgressBarOptions;
}

/** Options of `Accelerator.loadState`. */
export interface LoadStateOptions {
  /** Progress bar (bytes of model weights read), as {@link SaveStateOptions.progress}. */
  progress?: boolean | ProgressBarOptions;
  /**
   * Throw instead of warning when part of the state cannot be restored: a
   * rank with no saved RNG state (more processes than the saving run), RNG
   * state of another backend, a plugin with no namespace in the checkpoint.
   * Default false.
   */
  strict?: boolean;
  /** Require the model keys to match exactly (the backend's `loadStateDict` strictness). Default true. */
  strictModelKeys?: boolean;
}

/** What `Accelerator.loadState` restored. */
export interface LoadStateResult {
  /** Folder loaded. */
  dir: string;
  /** Its manifest. */
  manifest: CheckpointManifest;
  /** What could not be restored and why (also emitted as `AccelerateWarning`s). */
  warnings: string[];
}

/** The view of an Accelerator that saving and loading need. @internal */
export interface CheckpointHost {
  readonly backend: Backend<any, any, any, any>;
  readonly processIndex: number;
  readonly numProcesses: number;
  readonly isMainProcess: boolean;
  /** Prepared models (wrappers included). */
  readonly models: unknown[];
  /** Prepared optimizers / schedulers with the Accelerator's proxies removed. */
  readonly optimizers: unknown[];
  readonly schedulers: unknown[];
  readonly dataloaders: unknown[];
  readonly scaler: GradScaler<any, any> | undefined;
  readonly customObjects: unknown[];
  readonly plugins: readonly Plugin[];
  readonly pluginContext: PluginContext;
  /** The context one plugin's hooks receive. */
  readonly pluginContextOf?: (plugin: Plugin) => PluginContext;
  /** Checkpoint participants plugins added. */
  readonly participants?: readonly CheckpointParticipant[];
  /** The active distribution strategy. */
  readonly strategy?: DistributionStrategy<any, any>;
  readonly saveHooks: SaveStateHook[];
  readonly loadHooks: LoadStateHook[];
  readonly projectConfiguration: { projectDir?: string; automaticCheckpointNaming: boolean; totalLimit?: number; iteration: number };
  readonly configValues: unknown;
  /** Micro-steps since the last gradient sync. */
  readonly accumulationStep: number;
  readonly accumulationSteps: number;
  step: number;
  getStateDict(model: unknown): Promise<Record<string, HostTensor>>;
  unwrapModel(model: unknown): unknown;
  gatherObject<E>(obj: E[]): Promise<E[]>;
}

/** Per-rank state stored in `random_states_<rank>`. */
interface RandomStates {
  rank: number;
  step: number;
  accumulationStep: number;
  backend: { name: string; state: Uint8Array };
  dataGenerator: GeneratorState;
}

// ---------------------------------------------------------------------------

function delayMs(): number {
  const v = Number(process.env[SAVE_DELAY_ENV] ?? 0);
  return Number.isFinite(v) && v > 0 ? v : 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `gatherObject` with a hint when it fails: the usual cause of a save/load
 * collective timing out is calling it on the main process only.
 */
async function gatherAll<E>(host: CheckpointHost, what: string, obj: E[]): Promise<E[]> {
  try {
    return await host.gatherObject(obj);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(
      `${what}: the processes could not meet (${msg}). saveState and loadState are collective: call them on every process, not inside \`if (accelerator.isMainProcess)\`.`,
      { cause: err },
    );
  }
}

/** Run `fn` on this rank, then exchange success with every rank; throws on all of them when one failed (it doubles as a barrier). */
async function collectively(host: CheckpointHost, what: string, fn: () => Promise<void>): Promise<void> {
  let failure: unknown;
  try {
    await fn();
  } catch (err) {
    failure = err;
  }
  const message = failure === undefined ? null : failure instanceof Error ? failure.message : String(failure);
  const all = await gatherAll(host, what, [{ rank: host.processIndex, error: message }]);
  if (failure !== undefined) throw failure;
  const bad = all.find((r) => r.error !== null);
  if (bad) throw new Error(`${what} failed on rank ${bad.rank}: ${bad.error}`);
}

function hookOf<F extends (...args: any[]) => any>(h: PluginHook<F> | undefined): { fn: F; order: number } | undefined {
  if (!h) return undefined;
  if (typeof h === 'function') return { fn: h, order: 1 };
  return { fn: h.handler, order: h.order === 'pre' ? 0 : h.order === 'post' ? 2 : 1 };
}

function pluginHooks(plugins: readonly Plugin[], name: 'saveState' | 'loadState') {
  return plugins
    .map((p, i) => ({ p, i, h: hookOf(p[name]) }))
    .filter((x) => x.h !== undefined)
    .sort((a, b) => a.h!.order - b.h!.order || a.i - b.i)
    .map((x) => ({ plugin: x.p, fn: x.h!.fn }));
}

function checkPluginName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    throw new Error(`Plugin name ${JSON.stringify(name)} cannot be a checkpoint namespace folder: use letters, digits, ".", "_" and "-" only.`);
  }
}

function toHostFor(backend: Backend<any, any, any, any>) {
  return (v: unknown): HostTensor | undefined => (backend.isTensor(v) ? backend.toHost(v) : undefined);
}

function describe(obj: unknown): string {
  const name = (obj as object | null)?.constructor?.name;
  return name && name !== 'Object' ? name : typeof obj;
}

function optimizerState(backend: Backend<any, any, any, any>, opt: unknown, i: number): unknown {
  if (backend.optimizers?.stateDict) return backend.optimizers.stateDict(opt);
  const o = opt as { stateDict?: () => unknown };
  if (typeof o?.stateDict === 'function') return o.stateDict();
  throw new Error(
    `saveState: optimizer ${i} (${describe(opt)}) has no state dict: the "${backend.name}" backend has no optimizers.stateDict and the optimizer no stateDict() method.`,
  );
}

function schedulerState(backend: Backend<any, any, any, any>, s: unknown, i: number): unknown {
  if (backend.optimizers?.schedulerStateDict) return backend.optimizers.schedulerStateDict(s);
  const o = s as { stateDict?: () => unknown };
  if (typeof o?.stateDict === 'function') return o.stateDict();
  throw new Error(
    `saveState: scheduler ${i} (${describe(s)}) has no state dict: the "${backend.name}" backend has no optimizers.schedulerStateDict and the scheduler no stateDict() method.`,
  );
}

/** Objects `registerForCheckpointing` accepts: they have `stateDict()` and `loadStateDict(state)`. */
export interface Checkpointable {
  stateDict(): unknown;
  loadStateDict(state: any): unknown;
}

/**
 * Check objects for `registerForCheckpointing`: every one needs `stateDict`
 * and `loadStateDict` methods; the error lists each that lacks them as
 * `Item at index i` (Accelerate's wording) with its type.
 */
export function checkCheckpointable(objects: readonly unknown[]): asserts objects is Checkpointable[] {
  const bad: string[] = [];
  objects.forEach((o, i) => {
    const x = o as Partial<Checkpointable> | null | undefined;
    if (typeof x?.stateDict !== 'function' || typeof x?.loadStateDict !== 'function') bad.push(`- Item at index ${i}, \`${describe(o)}\``);
  });
  if (bad.length > 0) {
    throw new TypeError(
      `registerForCheckpointing: all objects must have a \`stateDict()\` and a \`loadStateDict(state)\` method to be stored. The following inputs are invalid:\n${bad.join('\n')}`,
    );
  }
}

/** Files of rank `rank`'s RNG state: `random_states_<rank>.json` and `.safetensors` (Accelerate's `random_states_<rank>.pkl`). */
export function randomStatesFileNames(rank: number): { json: string; tensors: string } {
  return { json: `random_states_${rank}.json`, tensors: `random_states_${rank}.safetensors` };
}

/** Files of the `index`-th registered object: `custom_checkpoint_<i>.json` (+ `.safetensors`), always numbered as in Accelerate. */
export function customFileNames(index: number): { json: string; tensors: string } {
  return { json: `custom_checkpoint_${index}.json`, tensors: `custom_checkpoint_${index}.safetensors` };
}

/** Where automatic naming saves checkpoint `iteration`. */
export function automaticCheckpointDir(projectDir: string, iteration: number): string {
  return join(projectDir, CHECKPOINTS_DIR, `checkpoint_${iteration}`);
}

/** Automatically named checkpoints under `<projectDir>/checkpoints`, oldest first (by number; hidden folders ignored). */
export async function listCheckpoints(projectDir: string): Promise<Array<{ dir: string; iteration: number }>> {
  const root = join(projectDir, CHECKPOINTS_DIR);
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fsp.readdir(root, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return entries
    .filter((e) => e.isDirectory() && CHECKPOINT_NAME_PATTERN.test(e.name))
    .map((e) => ({ dir: join(root, e.name), iteration: Number(CHECKPOINT_NAME_PATTERN.exec(e.name)![1]) }))
    .sort((a, b) => a.iteration - b.iteration);
}

// ---------------------------------------------------------------------------
// save

/**
 * Hash every file of the checkpoint folder `dir` and write its
 * `manifest.json` (last, durably): the step that makes a folder of state
 * files a loadable checkpoint. `saveState` uses it on its temporary folder;
 * converters that assemble a checkpoint from other files (e.g. `accelerate
 * checkpoint import-python`) use it before renaming their folder into place
 * with {@link commitCheckpointDir}. Returns the manifest written.
 */
export async function writeManifest(
  dir: string,
  fields: Omit<CheckpointManifest, 'format' | 'formatVersion' | 'accelerateTsVersion' | 'createdAt' | 'files' | 'configHash'> & { configHash?: string },
): Promise<CheckpointManifest> {
  const files: Record<string, ManifestFileEntry> = {};
  for (const rel of await listFilesRecursive(dir)) {
    if (rel === MANIFEST_NAME) continue;
    // writeSafetensors' own temporary files never survive a finished write; skip any stray one.
    if (basename(rel).startsWith('.') && rel.endsWith('.tmp')) continue;
    Object.defineProperty(files, rel, { value: await hashFile(join(dir, rel)), enumerable: true, writable: true, configurable: true });
  }
  const manifest: CheckpointManifest = {
    format: MANIFEST_FORMAT,
    formatVersion: MANIFEST_VERSION,
    accelerateTsVersion: accelerateTsVersion(),
    createdAt: new Date().toISOString(),
    configHash: fields.configHash ?? `sha256:${sha256Hex('null')}`,
    ...fields,
    files,
  };
  await writeFileDurable(join(dir, MANIFEST_NAME), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}

/** The mid-window warning is shown once per process. */
let warnedMidWindow = false;

/** `Accelerator.saveState`. @internal */
export async function saveAcceleratorState(host: CheckpointHost, outputDir: string | undefined, options: SaveStateOptions = {}): Promise<string> {
  if (options.safeSerialization === false) {
    throw new Error(
      'saveState: safeSerialization=false asks for PyTorch pickle files (pytorch_model.bin), which accelerate-ts does not write. Use safeSerialization: true (the default).',
    );
  }
  const pc = host.projectConfiguration;
  let target: string;
  if (pc.automaticCheckpointNaming) {
    target = resolve(automaticCheckpointDir(pc.projectDir!, pc.iteration));
    if (await pathExists(target)) {
      throw new Error(
        `saveState: checkpoint folder ${target} (iteration ${pc.iteration}) already exists. ` +
          'Set accelerator.projectConfiguration.iteration to the next free number (loadState() of the latest checkpoint does it for you), or remove the folder.',
      );
    }
    // Checkpoints numbered from this iteration up belong to an earlier run: saving below them would
    // make totalLimit prune the new checkpoint first (they sort after it). Refuse before writing.
    const later = (await listCheckpoints(pc.projectDir!)).filter((c) => c.iteration >= pc.iteration);
    if (later.length > 0) {
      const next = later[later.length - 1]!.iteration + 1;
      throw new Error(
        `saveState: ${resolve(pc.projectDir!, 'checkpoints')} already holds ${later.map((c) => `checkpoint_${c.iteration}`).join(', ')} from an earlier run, ` +
          `and this run would save checkpoint_${pc.iteration}. Resume with loadState() (it continues the numbering), ` +
          `or set accelerator.projectConfiguration.iteration = ${next} to keep counting after them, or use another projectDir.`,
      );
    }
  } else {
    if (outputDir === undefined || outputDir === '') {
      throw new Error('saveState: pass an outputDir, or construct the Accelerator with projectConfig { projectDir, automaticCheckpointNaming: true }.');
    }
    target = resolve(expandHome(outputDir));
    const st = await fsp.stat(target).catch(() => undefined);
    if (st && !st.isDirectory()) throw new Error(`saveState: ${target} is a file; pass a folder path (it is created if missing).`);
  }
  // Checked on every rank before anything is written: the folder is replaced as a whole, so other files in it would be lost.
  const foreign = await foreignEntries(target);
  if (foreign.length > 0) {
    const shown = foreign.slice(0, 5).join(', ') + (foreign.length > 5 ? `, … (${foreign.length} in all)` : '');
    throw new Error(
      `saveState: ${target} already holds files that are not part of a checkpoint (${shown}). saveState replaces the whole folder atomically and would delete them. ` +
        `Save into a folder of its own, e.g. ${join(target, 'checkpoint')}, or use projectConfig { projectDir, automaticCheckpointNaming: true }.`,
    );
  }
  if (host.isMainProcess && host.accumulationStep % host.accumulationSteps !== 0 && !warnedMidWindow) {
    warnedMidWindow = true; // once per process: a loop that saves every N batches would repeat it each time
    process.emitWarning(
      `saveState is called in the middle of a gradient accumulation window (micro-step ${host.accumulationStep % host.accumulationSteps} of ${host.accumulationSteps}): ` +
        'the gradients accumulated so far are not saved, so a run resumed from this checkpoint cannot match exactly. Save when `accelerator.syncGradients` is true (right after an optimizer step). Shown once.',
      'AccelerateWarning',
    );
  }

  const pids = await gatherAll(host, 'saveState', [process.pid]);
  const mainPid = pids[0];
  const temp = tempCheckpointDir(target, mainPid);

  await collectively(host, 'saveState (preparing the temporary folder)', async () => {
    if (!host.isMainProcess) return;
    await fsp.mkdir(dirname(target), { recursive: true });
    await recoverInterruptedReplace(target);
    for (const stale of (await leftoverSiblings(target)).temp) await fsp.rm(stale, { recursive: true, force: true });
    await fsp.mkdir(temp);
  });

  const delay = delayMs();
  const written = async () => {
    if (delay) await sleep(delay);
  };
  const contents = {
    models: 0,
    optimizers: host.optimizers.length,
    schedulers: host.schedulers.length,
    dataloaders: host.dataloaders.length,
    customObjects: host.customObjects.length,
    scaler: host.scaler !== undefined,
    plugins: [] as string[],
  };
  const sharedTensors: Record<string, string[]> = {};

  try {
    await collectively(host, 'saveState (writing files)', async () => {
      const backend = host.backend;
      const toHost = toHostFor(backend);
      const writeState = async (kind: StateKind, names: { json: string; tensors: string }, value: unknown, what: string) => {
        const enc = encodeState(kind, value, { toHost, what });
        if (enc.tensors.size > 0) {
          await writeFileDurable(join(temp, names.tensors), encodeStateTensors(enc.tensors));
          await written();
        }
        await writeFileDurable(join(temp, names.json), enc.json);
        await written();
      };

      const models = [...host.models];
      const weights: Array<Record<string, HostTensor>> = [];
      for (const m of models) weights.push(await host.getStateDict(m));
      for (const hook of host.saveHooks) await hook(models, weights, temp);
      contents.models = weights.length;

      if (host.isMainProcess) {
        const sizes = weights.map((w) => Object.values(w).reduce<number>((sum, t) => sum + stateTensorBytes(backend, t), 0));
        const bar = checkpointBar(mainProcessBar(options.progress, host), 'saveState: model weights', sizes.reduce((a, b) => a + b, 0), weights.length);
        try {
          for (let i = 0; i < weights.length; i++) {
            // Tied weights once, as saveModel (and Python's save_model) writes them.
            const { kept, removed } = removeSharedTensors(weights[i]);
            if (removed.length > 0) sharedTensors[modelFileName(i)] = removed;
            await writeSafetensors(join(temp, modelFileName(i)), kept, { format: 'pt' });
            bar.update(sizes[i], modelFileName(i));
            await written();
          }
        } finally {
          bar.close();
        }
        for (let i = 0; i < host.optimizers.length; i++) {
          await writeState('optimizer', stateFileNames('optimizer', i), await optimizerState(backend, host.optimizers[i], i), `optimizer ${i}`);
        }
        for (let i = 0; i < host.schedulers.length; i++) {
          await writeState('scheduler', stateFileNames('scheduler', i), schedulerState(backend, host.schedulers[i], i), `scheduler ${i}`);
        }
        for (let i = 0; i < host.dataloaders.length; i++) {
          const dl = host.dataloaders[i] as { stateDict?: () => unknown };
          if (typeof dl.stateDict !== 'function') throw new Error(`saveState: data loader ${i} (${describe(dl)}) has no stateDict(); prepare it with accelerator.prepare.`);
          await writeState('dataloader', stateFileNames('dl_state_dict', i), dl.stateDict(), `data loader ${i}`);
        }
        if (host.scaler) await writeState('scaler', stateFileNames('scaler'), host.scaler.stateDict(), 'the loss scaler');
        for (let i = 0; i < host.customObjects.length; i++) {
          const obj = host.customObjects[i] as Checkpointable;
          await writeState('custom', customFileNames(i), await obj.stateDict(), `registered object ${i} (${describe(obj)})`);
        }
      }

      const rng: RandomStates = {
        rank: host.processIndex,
        step: host.step,
        accumulationStep: host.accumulationStep,
        backend: { name: backend.name, state: requireCapability(backend, 'rng', 'saveState').getState() },
        dataGenerator: defaultGenerator().getState(),
      };
      await writeState('random_states', randomStatesFileNames(host.processIndex), rng as unknown as StateValue, `random states of rank ${host.processIndex}`);

      for (const { plugin, fn } of pluginHooks(host.plugins, 'saveState')) {
        checkPluginName(plugin.name);
        const dir = join(temp, PLUGINS_DIR, plugin.name);
        await fsp.mkdir(dir, { recursive: true });
        await fn(dir, host.pluginContextOf?.(plugin) ?? host.pluginContext);
        contents.plugins.push(plugin.name);
        await written();
      }
    });

    await collectively(host, 'saveState (committing)', async () => {
      if (!host.isMainProcess) return;
      await writeManifest(temp, {
        worldSize: host.numProcesses,
        backend: host.backend.name,
        configHash: `sha256:${sha256Hex(stableStringify(host.configValues))}`,
        step: host.step,
        iteration: pc.iteration,
        contents,
        ...(Object.keys(sharedTensors).length > 0 ? { sharedTensors } : {}),
      });
      await commitCheckpointDir(temp, target, mainPid);
      if (pc.automaticCheckpointNaming && pc.totalLimit !== undefined) {
        // Oldest first; never the folder just written.
        const all = (await listCheckpoints(pc.projectDir!)).filter((c) => resolve(c.dir) !== target);
        for (const old of all.slice(0, Math.max(0, all.length + 1 - pc.totalLimit))) await fsp.rm(old.dir, { recursive: true, force: true });
      }
    });
  } catch (err) {
    if (host.isMainProcess) await fsp.rm(temp, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
  pc.iteration += 1;
  return target;
}

// ---------------------------------------------------------------------------
// load

/**
 * Folders to try, best first: the one given (or the checkpoint an interrupted
 * replace set aside), or — with automatic naming and no folder — every
 * `checkpoint_<n>`, newest first, so an empty or partial newest one falls back
 * to the one before it.
 */
async function loadCandidates(host: CheckpointHost, inputDir: string | undefined, warnings: string[]): Promise<{ dirs: string[]; automatic: boolean }> {
  const pc = host.projectConfiguration;
  if (inputDir !== undefined) {
    const dir = resolve(expandHome(inputDir));
    const st = await fsp.stat(dir).catch(() => undefined);
    if (st && !st.isDirectory()) {
      throw new Error(
        `loadState: ${dir} is a file, but loadState expects a checkpoint folder written by saveState (holding manifest.json, model.safetensors, optimizer.json, …). ` +
          `Pass the folder that contains it${basename(dir) === MANIFEST_NAME ? ` (${dirname(dir)})` : ''}; to read only model weights from a .safetensors file use loadModelFiles(${JSON.stringify(dir)}).`,
      );
    }
    if (st) return { dirs: [dir], automatic: false };
    const { aside } = await leftoverSiblings(dir);
    if (aside.length === 1) {
      warnings.push(`${dir} is missing because a save replacing it was interrupted; loading the previous checkpoint from ${aside[0]}.`);
      return { dirs: [aside[0]], automatic: false };
    }
    throw new Error(`loadState: tried to find ${dir} but the folder does not exist. Pass the folder saveState returned (or call loadState() with automatic checkpoint naming to load the newest one).`);
  }
  if (pc.automaticCheckpointNaming) {
    const all = await listCheckpoints(pc.projectDir!);
    if (all.length === 0) throw new Error(`loadState: no checkpoint_<n> folder in ${join(pc.projectDir!, CHECKPOINTS_DIR)} to load.`);
    return { dirs: all.reverse().map((c) => c.dir), automatic: true };
  }
  throw new Error('loadState: no inputDir given and automatic checkpoint naming is off. Pass the checkpoint folder.');
}

/** `progress` as checkpointBar takes it, drawn on the main process only (whatever RANK says). */
function mainProcessBar(progress: boolean | ProgressBarOptions | undefined, host: CheckpointHost): boolean | ProgressBarOptions {
  if (progress === false) return false;
  const extra = typeof progress === 'object' ? progress : {};
  return { ...extra, isMainProcess: host.isMainProcess, ...(progress === true ? { enabled: host.isMainProcess } : {}) };
}

/** Bytes of one state-dict entry: a backend tensor or a HostTensor. */
function stateTensorBytes(backend: Backend, t: unknown): number {
  if (t instanceof HostTensor) return t.numel * dtypeElementBytes(t.dtype);
  if (backend.isTensor(t)) return backend.shape(t).reduce((a, b) => a * b, 1) * dtypeElementBytes(backend.dtype(t));
  return 0;
}

/** `~` and `~/…` as the shell (and Python's `os.path.expanduser`) read them. */
function expandHome(p: string): string {
  return p === '~' ? homedir() : p.startsWith('~/') ? join(homedir(), p.slice(2)) : p;
}

/**
 * Entries of an existing folder that a checkpoint replacing it would delete:
 * everything when it has no manifest (it is not one of our checkpoints),
 * else what its manifest does not list.
 */
async function foreignEntries(dir: string): Promise<string[]> {
  const entries = await fsp.readdir(dir).catch(() => [] as string[]);
  if (entries.length === 0) return [];
  const manifest = await fsp
    .readFile(join(dir, MANIFEST_NAME), 'utf8')
    .then((t) => JSON.parse(t) as { files?: Record<string, unknown> })
    .catch(() => undefined);
  if (!manifest?.files) return entries.sort();
  const own = new Set([MANIFEST_NAME, ...Object.keys(manifest.files).map((f) => f.split('/')[0])]);
  return entries.filter((e) => !own.has(e)).sort();
}

/** A file that passed the manifest check but does not parse, named. */
function unparsable(dir: string, file: string, err: unknown): CheckpointError {
  const msg = err instanceof Error ? err.message : String(err);
  const full = join(dir, file);
  return new CheckpointError(
    `loadState: ${full} cannot be parsed (${msg.includes(full) ? msg.replace(`${full}: `, '').replace(`${full} `, '') : msg}). ` +
      'Nothing was restored: loadState reads and checks every file before changing any object. Load another checkpoint (or re-save this one).',
    dir,
    file,
  );
}

async function readState(dir: string, manifest: CheckpointManifest, kind: StateKind, names: { json: string; tensors: string }): Promise<StateValue> {
  const json = new TextDecoder().decode(await readVerified(dir, manifest, names.json));
  const tensors = manifest.files[names.tensors] ? await readVerified(dir, manifest, names.tensors) : undefined;
  if (tensors) {
    try {
      parseSafetensors(tensors);
    } catch (err) {
      throw unparsable(dir, names.tensors, err);
    }
  }
  try {
    return decodeState(kind, json, tensors, join(dir, names.json));
  } catch (err) {
    throw unparsable(dir, names.json, err);
  }
}

function missingObject(dir: string, kind: string, index: number, saved: number, prepared: number, file: string): CheckpointError {
  return new CheckpointError(
    `loadState: ${kind} ${index} has no state in ${dir}: the checkpoint holds ${saved} ${kind}(s) but ${prepared} are prepared (${file} is not in the manifest). ` +
      'Prepare the same objects, in the same order, as the run that saved it.',
    dir,
    file,
  );
}

/**
 * `Accelerator.loadState`. Every rank loads; if one fails (a damaged file, a
 * missing RNG state with `strict`), all of them throw instead of the others
 * running on into a collective that never completes. @internal
 */
export async function loadAcceleratorState(host: CheckpointHost, inputDir: string | undefined, options: LoadStateOptions = {}): Promise<LoadStateResult> {
  const strict = options.strict ?? false;
  const warnings: string[] = [];
  let candidates: { dirs: string[]; automatic: boolean } | undefined;
  await collectively(host, 'loadState', async () => {
    candidates = await loadCandidates(host, inputDir, warnings);
  });
  const { dirs, automatic } = candidates!;
  // Read and parse first (nothing applied), and agree on one checkpoint: with automatic naming each
  // rank takes the newest it can read, and all move on to the oldest of their choices until they agree.
  const skipped: string[] = [];
  let chosen: { index: number; ckpt: ReadCheckpoint; warnings: string[] } | undefined;
  for (let from = 0; ; ) {
    await collectively(host, 'loadState', async () => {
      chosen = await firstReadable(host, dirs, automatic, from, strict, skipped);
    });
    const all = await gatherAll(host, 'loadState', [chosen!.index]);
    const agreed = Math.max(...all);
    if (all.every((i) => i === agreed)) break;
    for (let k = chosen!.index; k < agreed; k++) skipped.push(`${basename(dirs[k])}: another process could not read its files (see the warnings there).`);
    from = agreed;
  }
  const { ckpt } = chosen!;
  warnings.push(...chosen!.warnings);
  for (const s of skipped) warnings.push(`loadState: skipped the newer checkpoint ${s} Loaded ${ckpt.dir} instead; the skipped folder is left as it is (remove it once you no longer need it).`);
  let result: LoadStateResult | undefined;
  await collectively(host, 'loadState', async () => {
    result = await applyOnThisRank(host, ckpt, automatic ? dirs : [], options, warnings);
  });
  for (const w of result!.warnings) process.emitWarning(w, 'AccelerateWarning');
  return result!;
}

/**
 * The first of `dirs` from index `from` whose files this rank reads and
 * parses without error. Only automatic naming moves on past a damaged
 * checkpoint; an explicit folder is what the user asked for.
 */
async function firstReadable(
  host: CheckpointHost,
  dirs: string[],
  automatic: boolean,
  from: number,
  strict: boolean,
  skipped: string[],
): Promise<{ index: number; ckpt: ReadCheckpoint; warnings: string[] }> {
  for (let index = from; index < dirs.length; index++) {
    const warnings: string[] = [];
    try {
      return { index, ckpt: await readCheckpoint(host, dirs[index], warnings, strict), warnings };
    } catch (err) {
      if (!automatic || !(err instanceof CheckpointError)) throw err;
      skipped.push(`${basename(dirs[index])}: ${err.message}`);
    }
  }
  const root = join(host.projectConfiguration.projectDir!, CHECKPOINTS_DIR);
  throw new CheckpointError(`loadState: no valid checkpoint in ${root}; every one failed its checks:\n- ${skipped.join('\n- ')}\nSave a new checkpoint, or repair one of these.`, root);
}

/** Everything a checkpoint holds for this rank, read, checked and parsed; nothing applied yet. */
interface ReadCheckpoint {
  dir: string;
  manifest: CheckpointManifest;
  /** Parsed model files by index (only those the manifest lists). */
  models: Map<number, ReturnType<typeof parseSafetensors>>;
  optimizers: StateValue[];
  schedulers: StateValue[];
  /** Per prepared loader; undefined when the checkpoint holds no position for it. */
  dataloaders: Array<StateValue | undefined>;
  scaler: StateValue | undefined;
  custom: StateValue[];
  rng: RandomStates | undefined;
}

/**
 * Read every file this rank will apply, check it against the manifest and
 * parse it, so that a damaged or unreadable file fails the load before any
 * object is changed.
 */
async function readCheckpoint(host: CheckpointHost, dir: string, warnings: string[], strict: boolean): Promise<ReadCheckpoint> {
  const manifest = await readManifest(dir);
  const customFiles = Object.keys(manifest.files).filter((f) => /^custom_checkpoint_\d+\.json$/.test(f));
  if (customFiles.length !== host.customObjects.length) {
    throw new CheckpointError(
      `loadState: the number of custom checkpoints in ${dir} does not match the number of registered objects: found ${customFiles.length} (${customFiles.sort().join(', ') || 'none'}), registered ${host.customObjects.length}. ` +
        'Load checkpoints saved with the same objects passed to registerForCheckpointing, in the same order.',
      dir,
    );
  }
  const models = new Map<number, ReturnType<typeof parseSafetensors>>();
  for (let i = 0; i < host.models.length; i++) {
    const file = modelFileName(i);
    if (!manifest.files[file]) continue; // a load hook may take this model over; checked after the hooks
    const bytes = await readVerified(dir, manifest, file);
    try {
      models.set(i, parseSafetensors(bytes));
    } catch (err) {
      throw unparsable(dir, file, err);
    }
  }
  const read = async (kind: StateKind, base: string, label: string, count: number, saved: number) => {
    const out: StateValue[] = [];
    for (let i = 0; i < count; i++) {
      const names = stateFileNames(base, i);
      if (!manifest.files[names.json]) throw missingObject(dir, label, i, saved, count, names.json);
      out.push(await readState(dir, manifest, kind, names));
    }
    return out;
  };
  const optimizers = await read('optimizer', 'optimizer', 'optimizer', host.optimizers.length, manifest.contents.optimizers);
  const schedulers = await read('scheduler', 'scheduler', 'scheduler', host.schedulers.length, manifest.contents.schedulers);
  const dataloaders: Array<StateValue | undefined> = [];
  const fromStart: number[] = [];
  for (let i = 0; i < host.dataloaders.length; i++) {
    const names = stateFileNames('dl_state_dict', i);
    if (manifest.files[names.json]) dataloaders.push(await readState(dir, manifest, 'dataloader', names));
    else {
      dataloaders.push(undefined);
      fromStart.push(i);
    }
  }
  if (fromStart.length > 0) {
    // E.g. a checkpoint imported from Python Accelerate, which keeps no loader position.
    const message =
      `${dir} holds no position for data loader(s) ${fromStart.join(', ')} (no ${fromStart.map((i) => stateFileNames('dl_state_dict', i).json).join(', ')}): ` +
      'they start from the beginning of their epoch. If the saving run was k batches into the epoch, skip them with `accelerator.skipFirstBatches(loader, k)`.';
    if (strict) throw new CheckpointError(`${message} (loadState was called with strict: true)`, dir, stateFileNames('dl_state_dict', fromStart[0]).json);
    warnings.push(message);
  }
  let scaler: StateValue | undefined;
  if (host.scaler && manifest.files[stateFileNames('scaler', 0).json]) scaler = await readState(dir, manifest, 'scaler', stateFileNames('scaler', 0));
  const custom: StateValue[] = [];
  for (let i = 0; i < host.customObjects.length; i++) custom.push(await readState(dir, manifest, 'custom', customFileNames(i)));
  for (const { plugin } of pluginHooks(host.plugins, 'loadState')) {
    if (!manifest.contents.plugins.includes(plugin.name)) continue;
    const prefix = `${PLUGINS_DIR}/${plugin.name}/`;
    for (const f of Object.keys(manifest.files)) if (f.startsWith(prefix)) await verifyFile(dir, manifest, f);
  }
  const rngFiles = randomStatesFileNames(host.processIndex);
  const rng = manifest.files[rngFiles.json] ? ((await readState(dir, manifest, 'random_states', rngFiles)) as unknown as RandomStates) : undefined;
  return { dir, manifest, models, optimizers, schedulers, dataloaders, scaler, custom, rng };
}

/**
 * Throw, naming the file, when model `index`'s weights file does not fit the
 * prepared model: a tensor of another shape, or (with `strict`) missing or
 * unexpected names. A missing name whose tensor is the same object as a
 * present name (tied weights, kept once in the file) is not missing.
 */
function checkModelFits(backend: Backend<any, any, any, any>, model: unknown, parsed: ReturnType<typeof parseSafetensors>, dir: string, index: number, strict: boolean): void {
  // Not disposed afterwards: some backends return the model's own tensors here.
  const sd = requireCapability(backend, 'models', 'loadState').stateDict(model) as Record<string, unknown>;
  const file = modelFileName(index);
  const inFile = new Set(parsed.keys());
  // Only when the backend names tensors as the file does (one name set contains the other):
  // a backend that converts names on load (tfjs layers: kernel <-> weight) is left to its loadStateDict.
  const names = Object.keys(sd);
  if (!names.every((k) => inFile.has(k)) && ![...inFile].every((k) => k in sd)) return;
  const problems: string[] = [];
  const present = new Set<unknown>();
  for (const [k, t] of Object.entries(sd)) {
    if (!inFile.has(k)) continue;
    present.add(t);
    const want = backend.shape(t);
    const got = parsed.info(k).shape;
    if (want.length !== got.length || want.some((d, j) => d !== got[j])) problems.push(`size mismatch for ${k}: the checkpoint has shape [${got.join(', ')}], the model [${want.join(', ')}]`);
  }
  if (strict) {
    const list = (names: string[]) => `[${names.slice(0, 10).join(', ')}${names.length > 10 ? `, … (${names.length})` : ''}]`;
    const missing = Object.entries(sd).filter(([k, t]) => !inFile.has(k) && !present.has(t)).map(([k]) => k);
    const unexpected = [...inFile].filter((k) => !(k in sd));
    if (missing.length) problems.push(`missing keys ${list(missing)}`);
    if (unexpected.length) problems.push(`unexpected keys ${list(unexpected)}`);
  }
  if (problems.length > 0) {
    throw new CheckpointError(
      `loadState: ${join(dir, file)} does not fit model ${index}: ${problems.join('; ')}. Nothing was restored. ` +
        `Prepare the same model as the run that saved it${strict ? ', or pass strictModelKeys: false to load the matching names only' : ''}.`,
      dir,
      file,
    );
  }
}

/** Apply a checkpoint read by {@link readCheckpoint} to this rank's objects. `scanned`: the automatic-naming folders considered. */
async function applyOnThisRank(host: CheckpointHost, ckpt: ReadCheckpoint, scanned: string[], options: LoadStateOptions, warnings: string[]): Promise<LoadStateResult> {
  const strict = options.strict ?? false;
  const problem = (message: string, dir: string, file?: string) => {
    if (strict) throw new CheckpointError(`${message} (loadState was called with strict: true)`, dir, file);
    warnings.push(message);
  };
  const { dir, manifest } = ckpt;
  const backend = host.backend;

  // More saved objects than prepared ones load silently in Python; say what is left behind.
  for (const [kind, saved, prepared] of [
    ['model', manifest.contents.models, host.models.length],
    ['optimizer', manifest.contents.optimizers, host.optimizers.length],
    ['scheduler', manifest.contents.schedulers, host.schedulers.length],
    ['data loader', manifest.contents.dataloaders, host.dataloaders.length],
  ] as const) {
    if (saved > prepared) {
      problem(`${dir} holds ${saved} ${kind}(s) but only ${prepared} are prepared: the last ${saved - prepared} are not restored. Prepare the same objects as the saving run to restore them.`, dir);
    }
  }
  const models = [...host.models];
  for (const hook of host.loadHooks) await hook(models, dir);
  for (let i = 0; i < models.length; i++) {
    const file = modelFileName(i);
    if (!ckpt.models.has(i)) throw missingObject(dir, 'model', i, manifest.contents.models, models.length, file);
  }

  // Models that do not fit are refused before anything changes (same-backend checkpoints only:
  // another backend may load through a name or layout conversion this check cannot see).
  // Load hooks may have taken models over; those are not checked.
  if (manifest.backend === backend.name) {
    for (let i = 0; i < models.length; i++) checkModelFits(backend, host.unwrapModel(models[i]), ckpt.models.get(i)!, dir, i, options.strictModelKeys ?? true);
  }

  // Everything is read and parsed: from here on objects change. A failure now (a shape
  // that does not fit, a loader over another dataset) says what was already restored.
  const restored: string[] = [];
  const applying = async (what: string, fn: () => unknown) => {
    try {
      await fn();
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      const already = restored.length ? `Already restored before it failed: ${restored.join(', ')}; those objects now hold the checkpoint's state and the rest do not. ` : 'Nothing was restored. ';
      const wrapped = new Error(`${msg}\nloadState stopped while restoring ${what} from ${dir}. ${already}Load a checkpoint that matches the prepared objects before training on.`, { cause: err });
      if (err instanceof CheckpointError) throw Object.assign(new CheckpointError(wrapped.message, err.dir, err.file), { cause: err });
      throw wrapped;
    }
    restored.push(what);
  };

  const modelBytes = models.reduce<number>((sum, _m, i) => sum + (manifest.files[modelFileName(i)]?.size ?? 0), 0);
  const bar = checkpointBar(mainProcessBar(options.progress, host), 'loadState: model weights', modelBytes, models.length);
  try {
    for (let i = 0; i < models.length; i++) {
      const file = modelFileName(i);
      await applying(`model ${i} (${file})`, () =>
        requireCapability(backend, 'models', 'loadState').loadStateDict(host.unwrapModel(models[i]), ckpt!.models.get(i)!.tensors(), { strict: options.strictModelKeys ?? true }),
      );
      bar.update(manifest.files[file].size, file);
    }
  } finally {
    bar.close();
  }

  for (let i = 0; i < host.optimizers.length; i++) {
    const names = stateFileNames('optimizer', i);
    const state = ckpt.optimizers[i];
    const opt = host.optimizers[i];
    await applying(`optimizer ${i} (${names.json})`, async () => {
      if (backend.optimizers?.loadStateDict) {
        try {
          await backend.optimizers.loadStateDict(opt, state);
        } catch (err) {
          // Optimizer states are laid out by the backend that saved them.
          if (manifest.backend === backend.name) throw err;
          throw new CheckpointError(
            `loadState: optimizer ${i}'s state in ${dir} was saved by the "${manifest.backend}" backend and cannot be loaded by "${backend.name}" (${(err as Error).message}). ` +
              `Resume with the "${manifest.backend}" backend, or load only the weights (loadModelFiles) and start the optimizer afresh.`,
            dir,
            names.json,
          );
        }
      } else if (typeof (opt as Partial<Checkpointable>).loadStateDict === 'function') await (opt as Checkpointable).loadStateDict(state);
      else throw new Error(`loadState: optimizer ${i} (${describe(opt)}) cannot load a state: the "${backend.name}" backend has no optimizers.loadStateDict and the optimizer no loadStateDict().`);
    });
  }

  for (let i = 0; i < host.schedulers.length; i++) {
    const state = ckpt.schedulers[i];
    const s = host.schedulers[i];
    await applying(`scheduler ${i} (${stateFileNames('scheduler', i).json})`, async () => {
      if (backend.optimizers?.loadSchedulerStateDict) backend.optimizers.loadSchedulerStateDict(s, state);
      else if (typeof (s as Partial<Checkpointable>).loadStateDict === 'function') await (s as Checkpointable).loadStateDict(state);
      else throw new Error(`loadState: scheduler ${i} (${describe(s)}) cannot load a state: the "${backend.name}" backend has no optimizers.loadSchedulerStateDict and the scheduler no loadStateDict().`);
    });
  }

  for (let i = 0; i < host.dataloaders.length; i++) {
    const state = ckpt.dataloaders[i];
    if (state === undefined) continue; // warned about when reading
    await applying(`data loader ${i} (${stateFileNames('dl_state_dict', i).json})`, () => (host.dataloaders[i] as { loadStateDict(s: unknown): void }).loadStateDict(state));
  }

  if (host.scaler) {
    const names = stateFileNames('scaler', 0);
    if (ckpt.scaler !== undefined) await applying(`the loss scaler (${names.json})`, () => host.scaler!.loadStateDict(ckpt!.scaler as Record<string, number>));
    else problem(`The fp16 loss scaler's state is not restored: ${dir} holds none (the saving run had no scaler); it keeps its initial scale.`, dir, names.json);
  }

  for (let i = 0; i < host.customObjects.length; i++) {
    await applying(`registered object ${i} (${customFileNames(i).json})`, () => (host.customObjects[i] as Checkpointable).loadStateDict(ckpt!.custom[i]));
  }

  for (const { plugin, fn } of pluginHooks(host.plugins, 'loadState')) {
    const prefix = `${PLUGINS_DIR}/${plugin.name}/`;
    if (!manifest.contents.plugins.includes(plugin.name)) {
      problem(`Plugin "${plugin.name}" has no namespace in ${dir} (the saving run did not have it), so its loadState hook was not called.`, dir, prefix);
      continue;
    }
    await applying(`plugin "${plugin.name}" (${prefix})`, () => fn(join(dir, PLUGINS_DIR, plugin.name), host.pluginContextOf?.(plugin) ?? host.pluginContext));
  }

  // RNG last: nothing above may draw from the generators after they are restored.
  const rank = host.processIndex;
  const rngJson = randomStatesFileNames(rank).json;
  const rng = ckpt.rng;
  if (rng) {
    await applying(`rank ${rank}'s RNG state (${rngJson})`, () => {
      if (rng.dataGenerator !== undefined) defaultGenerator().setState(rng.dataGenerator);
    });
    if (rng.backend?.name === backend.name) await applying(`rank ${rank}'s ${backend.name} RNG state (${rngJson})`, () => requireCapability(backend, 'rng', 'loadState').setState(rng.backend.state));
    else {
      problem(
        `Rank ${rank}'s ${backend.name} RNG state is not restored: the checkpoint holds the RNG state of the "${rng.backend?.name ?? 'no'}" backend, which this backend cannot use. Core's data generator was ${rng.dataGenerator !== undefined ? 'restored' : 'not restored either (the checkpoint holds none)'}.`,
        dir,
        rngJson,
      );
    }
  } else {
    problem(
      `Rank ${rank}'s RNG state is not restored: ${dir} was saved by ${manifest.worldSize} process(es) and holds random_states_0..${manifest.worldSize - 1}, and rank ${rank} did not exist then. ` +
        `Its ${backend.name} generator and core's data generator keep their current state, so random draws on this rank (dropout, noise) differ from a run that never stopped; the data position, model, optimizer and schedulers are restored.`,
      dir,
      rngJson,
    );
  }
  if (host.isMainProcess && manifest.worldSize > host.numProcesses) {
    const lost = Array.from({ length: manifest.worldSize - host.numProcesses }, (_, k) => `random_states_${host.numProcesses + k}`);
    warnings.push(
      `${lost.join(', ')} in ${dir} are not restored: the checkpoint was saved by ${manifest.worldSize} processes and this run has ${host.numProcesses}. ` +
        'The data position is world-size independent and continues exactly; the per-rank RNG streams of the missing ranks are dropped.',
    );
  }

  host.step = manifest.step;
  const pc = host.projectConfiguration;
  if (pc.automaticCheckpointNaming && pc.projectDir) {
    const m = CHECKPOINT_NAME_PATTERN.exec(basename(dir));
    if (m && resolve(dirname(dir)) === resolve(pc.projectDir, CHECKPOINTS_DIR)) pc.iteration = Math.max(pc.iteration, Number(m[1]) + 1);
    // Skipped newer folders keep their numbers: the next save goes after them.
    for (const d of scanned) {
      const n = CHECKPOINT_NAME_PATTERN.exec(basename(d));
      if (n) pc.iteration = Math.max(pc.iteration, Number(n[1]) + 1);
    }
  }
  return { dir, manifest, warnings };
}
