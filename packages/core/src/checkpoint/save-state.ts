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
 * Every part of it is written and read by a checkpoint participant (see the
 * participants module and `CheckpointParticipant`): core's for the models (or
 * the strategy's `modelCheckpoint`), optimizers, schedulers, data loaders,
 * the loss scaler, registered objects, RNG states and plugin namespaces, plus
 * those plugins add with `ctx.addCheckpointParticipant` (their files sit next
 * to these, their records in the manifest's `contents.participants`).
 *
 * Saving is atomic (see the atomic module): every rank writes into
 * `.<name>.tmp-<pid of rank 0>`, rank 0 checks it sees every rank's files,
 * hashes them, writes the manifest last and renames the folder into place
 * after everyone finished. Loading runs every participant's `read` on every
 * rank first (nothing changes) and only when all succeeded everywhere their
 * apply functions.
 * @module
 */
import * as fsp from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { Backend, GradScaler } from '../interfaces/backend.js';
import type { CheckpointParticipant } from '../interfaces/checkpoint.js';
import type { DistributionStrategy, StrategyContext } from '../interfaces/strategy.js';
import type { Plugin, PluginContext } from '../interfaces/plugin.js';
import type { HostTensor } from '../tensor/host-tensor.js';
import type { ProgressBarOptions } from '../utils/progress.js';
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
  sha256Hex,
  stableStringify,
  type CheckpointManifest,
  type ManifestContents,
  type ManifestFileEntry,
} from './manifest.js';
import {
  checkCustomObjectCount,
  makeReader,
  makeWriter,
  planParticipants,
  type Checkpointable,
  type CheckpointSession,
  type ParticipantEntry,
  type ParticipantPlan,
} from './participants.js';

export { CORE_PARTICIPANT_NAMES, PLUGINS_DIR, customFileNames, randomStatesFileNames, type Checkpointable } from './participants.js';

/** Folder automatic checkpoint naming writes into, below `projectDir`. */
export const CHECKPOINTS_DIR = 'checkpoints';
/** Name pattern of automatically named checkpoints. */
export const CHECKPOINT_NAME_PATTERN = /^checkpoint_(\d+)$/;
/** Test-only: milliseconds to sleep after each file a save writes (lets tests kill a process mid-save). @internal */
export const SAVE_DELAY_ENV = 'ACCELERATE_TS_TEST_SAVE_DELAY_MS';

/**
 * Runs before the state is written, on every process (Accelerate's
 * `register_save_state_pre_hook`): `models` are the prepared models,
 * `weights` their host state dicts, `dir` the (temporary) folder being
 * written. A hook may save extra files into `dir` and may remove entries of
 * `weights` to save those models itself; the remaining ones are written as
 * `model.safetensors`, `model_1.safetensors`, … in order. Under a strategy
 * that saves the models itself (`modelCheckpoint`), `weights` is empty, as
 * Accelerate passes it under FSDP and DeepSpeed.
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
  /** What the strategy was set up with (passed to its `modelCheckpoint`). */
  readonly strategyContext?: StrategyContext<any>;
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

function describe(obj: unknown): string {
  const name = (obj as object | null)?.constructor?.name;
  return name && name !== 'Object' ? name : typeof obj;
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

/** A session for one save or load (see {@link CheckpointSession}). */
function newSession(host: CheckpointHost, progress: boolean | ProgressBarOptions | undefined, opts: { written?: () => Promise<void>; strictModelKeys?: boolean }): CheckpointSession {
  return {
    host,
    progress,
    written: opts.written ?? (async () => undefined),
    sharedTensors: {},
    strictModelKeys: opts.strictModelKeys ?? true,
    restoring: async (_what, fn) => void (await fn()),
  };
}

/**
 * The manifest's `contents`: what core's participants recorded, under their
 * names and in the order manifests always had, and — only when there are
 * any — what the other participants recorded, under `participants`.
 */
function manifestContents(host: CheckpointHost, plan: ParticipantPlan, records: Map<string, unknown>): ManifestContents {
  const rec = <V>(name: string, fallback: V): V => (records.has(name) ? (records.get(name) as V) : fallback);
  const contents: ManifestContents = {
    // A strategy's model participant records under its own name; the count of models stays here.
    models: rec('models', host.models.length),
    optimizers: rec('optimizers', host.optimizers.length),
    schedulers: rec('schedulers', host.schedulers.length),
    dataloaders: rec('dataloaders', host.dataloaders.length),
    customObjects: rec('customObjects', host.customObjects.length),
    scaler: rec('scaler', host.scaler !== undefined),
    plugins: rec('plugins', [] as string[]),
  };
  const extra: Record<string, unknown> = {};
  for (const { participant, recordAt } of plan.save) {
    if (recordAt === 'participants' && records.has(participant.name)) extra[participant.name] = records.get(participant.name);
  }
  if (Object.keys(extra).length > 0) contents.participants = extra;
  return contents;
}

/**
 * Check, on the main process, that every file a rank's participants wrote is
 * in the temporary folder and that no two ranks wrote the same file, so the
 * manifest lists every rank's files.
 */
async function checkEveryRankWrote(temp: string, byRank: string[][]): Promise<void> {
  const owner = new Map<string, number>();
  for (let rank = 0; rank < byRank.length; rank++) {
    for (const file of byRank[rank]) {
      const other = owner.get(file);
      if (other !== undefined && other !== rank) {
        throw new Error(`saveState: ranks ${other} and ${rank} both wrote ${file}; a participant with writers: 'every' must give each rank's files their own names (e.g. with the rank in the name).`);
      }
      owner.set(file, rank);
      if (!(await pathExists(join(temp, file)))) {
        throw new Error(
          `saveState: rank ${rank} wrote ${file}, but the main process does not find it in ${temp}. saveState needs every rank to see the same file system (a shared folder) so the manifest can list every rank's files.`,
        );
      }
    }
  }
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

  const delay = delayMs();
  const session = newSession(host, options.progress, {
    written: async () => {
      if (delay) await sleep(delay);
    },
  });
  const plan = planParticipants(session);

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

  const claimed = new Map<string, string>();
  const records = new Map<string, unknown>();
  try {
    await collectively(host, 'saveState (writing files)', async () => {
      for (const { participant, core } of plan.save) {
        if ((participant.writers ?? 'main') === 'main' && !host.isMainProcess) continue;
        await participant.save(makeWriter(session, temp, participant.name, claimed, records, core));
      }
    });
    // The files each rank's participants wrote: the main process checks it sees all of them
    // before it hashes the folder (saveState assumes every rank shares the file system).
    const byRank = await gatherAll(host, 'saveState', [[...claimed.keys()]]);

    await collectively(host, 'saveState (committing)', async () => {
      if (!host.isMainProcess) return;
      await checkEveryRankWrote(temp, byRank);
      await writeManifest(temp, {
        worldSize: host.numProcesses,
        backend: host.backend.name,
        configHash: `sha256:${sha256Hex(stableStringify(host.configValues))}`,
        step: host.step,
        iteration: pc.iteration,
        contents: manifestContents(host, plan, records),
        ...(Object.keys(session.sharedTensors).length > 0 ? { sharedTensors: session.sharedTensors } : {}),
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

/**
 * `Accelerator.loadState`. Every rank loads; if one fails (a damaged file, a
 * missing RNG state with `strict`), all of them throw instead of the others
 * running on into a collective that never completes. @internal
 */
export async function loadAcceleratorState(host: CheckpointHost, inputDir: string | undefined, options: LoadStateOptions = {}): Promise<LoadStateResult> {
  const strict = options.strict ?? false;
  const warnings: string[] = [];
  let candidates: { dirs: string[]; automatic: boolean } | undefined;
  const session = newSession(host, options.progress, { strictModelKeys: options.strictModelKeys ?? true });
  let plan: ParticipantPlan | undefined;
  await collectively(host, 'loadState', async () => {
    plan = planParticipants(session);
    candidates = await loadCandidates(host, inputDir, warnings);
  });
  const { dirs, automatic } = candidates!;
  // Read and parse first (nothing applied), and agree on one checkpoint: with automatic naming each
  // rank takes the newest it can read, and all move on to the oldest of their choices until they agree.
  const skipped: string[] = [];
  let chosen: { index: number; ckpt: ReadCheckpoint; warnings: string[] } | undefined;
  for (let from = 0; ; ) {
    await collectively(host, 'loadState', async () => {
      chosen = await firstReadable(host, session, plan!, dirs, automatic, from, strict, skipped);
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
    result = await applyOnThisRank(host, session, ckpt, automatic ? dirs : [], options, warnings);
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
  session: CheckpointSession,
  plan: ParticipantPlan,
  dirs: string[],
  automatic: boolean,
  from: number,
  strict: boolean,
  skipped: string[],
): Promise<{ index: number; ckpt: ReadCheckpoint; warnings: string[] }> {
  for (let index = from; index < dirs.length; index++) {
    const warnings: string[] = [];
    try {
      return { index, ckpt: await readCheckpoint(host, session, plan, dirs[index], warnings, strict), warnings };
    } catch (err) {
      if (!automatic || !(err instanceof CheckpointError)) throw err;
      skipped.push(`${basename(dirs[index])}: ${err.message}`);
    }
  }
  const root = join(host.projectConfiguration.projectDir!, CHECKPOINTS_DIR);
  throw new CheckpointError(`loadState: no valid checkpoint in ${root}; every one failed its checks:\n- ${skipped.join('\n- ')}\nSave a new checkpoint, or repair one of these.`, root);
}

/** A checkpoint read, checked and parsed for this rank: every participant's apply, nothing applied yet. */
interface ReadCheckpoint {
  dir: string;
  manifest: CheckpointManifest;
  /** In apply order. */
  applies: Array<{ entry: ParticipantEntry; apply: () => void | Promise<void> }>;
  /** Where the readers' warnings go (the driver points it at the final list before applying). */
  sink: { warnings: string[] };
}

/**
 * Run every participant's `read` for checkpoint `dir` on this rank: each file
 * it will apply is checked against the manifest and parsed, so that a
 * damaged or unreadable file fails the load before any object is changed.
 */
async function readCheckpoint(host: CheckpointHost, session: CheckpointSession, plan: ParticipantPlan, dir: string, warnings: string[], strict: boolean): Promise<ReadCheckpoint> {
  const manifest = await readManifest(dir);
  checkCustomObjectCount(host, dir, manifest);
  const sink = { warnings };
  const applies: ReadCheckpoint['applies'] = [];
  const extra = (manifest.contents as { participants?: Record<string, unknown> }).participants ?? {};
  for (const entry of plan.load) {
    const { participant } = entry;
    const recorded = entry.recordAt === 'contents' ? (manifest.contents as unknown as Record<string, unknown>)[participant.name] : Object.hasOwn(extra, participant.name) ? extra[participant.name] : undefined;
    const apply = await participant.read(makeReader(host, dir, manifest, recorded, strict, sink));
    if (typeof apply !== 'function') throw new TypeError(`loadState: checkpoint participant "${participant.name}"'s read() must return the function that applies what it read.`);
    applies.push({ entry, apply });
  }
  return { dir, manifest, applies, sink };
}

/** Apply a checkpoint read by {@link readCheckpoint} to this rank's objects. `scanned`: the automatic-naming folders considered. */
async function applyOnThisRank(host: CheckpointHost, session: CheckpointSession, ckpt: ReadCheckpoint, scanned: string[], options: LoadStateOptions, warnings: string[]): Promise<LoadStateResult> {
  const strict = options.strict ?? false;
  const problem = (message: string, dir: string, file?: string) => {
    if (strict) throw new CheckpointError(`${message} (loadState was called with strict: true)`, dir, file);
    warnings.push(message);
  };
  const { dir, manifest } = ckpt;
  ckpt.sink.warnings = warnings;

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

  // Everything is read and parsed: from here on objects change. A failure now (a shape
  // that does not fit, a loader over another dataset) says what was already restored.
  const restored: string[] = [];
  session.restoring = async (what: string, fn: () => unknown) => {
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
  // Core's participants report each object they restore; the others as a whole.
  for (const { entry, apply } of ckpt.applies) {
    if (entry.core) await apply();
    else await session.restoring(entry.label, apply);
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
