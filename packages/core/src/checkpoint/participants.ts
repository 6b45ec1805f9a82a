/**
 * The checkpoint participants `saveState` / `loadState` run, and the writer
 * and reader they get. Core's own participants (models, optimizers,
 * schedulers, data loaders, the loss scaler, registered objects, RNG states,
 * plugin namespaces) write exactly the files `saveState` always wrote;
 * participants plugins add (`ctx.addCheckpointParticipant`) and a strategy's
 * `modelCheckpoint` use the same contract. The driver in the save-state
 * module owns the folder, its atomic commit and the manifest.
 * @module
 */
import * as fsp from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { requireCapability, type Backend } from '../interfaces/backend.js';
import type { CheckpointParticipant, CheckpointReader, CheckpointWriter } from '../interfaces/checkpoint.js';
import type { Plugin, PluginHook } from '../interfaces/plugin.js';
import { HostTensor, dtypeElementBytes } from '../tensor/host-tensor.js';
import { defaultGenerator, type GeneratorState } from '../data/random.js';
import { parseSafetensors, writeSafetensors } from './safetensors.js';
import { checkpointBar, removeSharedTensors } from './save-model.js';
import type { ProgressBarOptions } from '../utils/progress.js';
import { writeFileDurable } from './atomic.js';
import { CheckpointError, MANIFEST_NAME, readVerified, verifyFile, type CheckpointManifest } from './manifest.js';
import { decodeState, encodeState, encodeStateTensors, modelFileName, stateFileNames, type StateFiles, type StateKind, type StateValue } from './state.js';
import type { CheckpointHost } from './save-state.js';

/** Sub-folder holding the plugins' namespaces. */
export const PLUGINS_DIR = 'plugins';

/**
 * Names of core's participants. They are also their keys in the manifest's
 * `contents` (what each recorded: a count, `scaler`'s boolean, `plugins`'
 * namespace list); participants added by plugins or a strategy record under
 * `contents.participants[name]` and cannot take these names.
 */
export const CORE_PARTICIPANT_NAMES = ['models', 'optimizers', 'schedulers', 'dataloaders', 'scaler', 'customObjects', 'random_states', 'plugins', 'participants'] as const;

/** Objects `registerForCheckpointing` accepts: they have `stateDict()` and `loadStateDict(state)`. */
export interface Checkpointable {
  stateDict(): unknown;
  loadStateDict(state: any): unknown;
}

/** Files of rank `rank`'s RNG state: `random_states_<rank>.json` and `.safetensors` (Accelerate's `random_states_<rank>.pkl`). */
export function randomStatesFileNames(rank: number): { json: string; tensors: string } {
  return { json: `random_states_${rank}.json`, tensors: `random_states_${rank}.safetensors` };
}

/** Files of the `index`-th registered object: `custom_checkpoint_<i>.json` (+ `.safetensors`), always numbered as in Accelerate. */
export function customFileNames(index: number): { json: string; tensors: string } {
  return { json: `custom_checkpoint_${index}.json`, tensors: `custom_checkpoint_${index}.safetensors` };
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
// sessions, writer, reader

/** What one `saveState` / `loadState` call shares with core's participants. @internal */
export interface CheckpointSession {
  readonly host: CheckpointHost;
  readonly progress: boolean | ProgressBarOptions | undefined;
  /** Save: sleeps after each file when the test delay is set. */
  readonly written: () => Promise<void>;
  /** Save: names left out of model files because they are tied to an earlier name (the manifest's `sharedTensors`). */
  readonly sharedTensors: Record<string, string[]>;
  /** Load: the backend's key strictness for model files. */
  readonly strictModelKeys: boolean;
  /**
   * Load: run one object's restore; a failure names what was already restored.
   * Set by the driver before the apply phase.
   */
  restoring: (what: string, fn: () => unknown) => Promise<void>;
}

/** A participant and what the driver needs to know about it. @internal */
export interface ParticipantEntry {
  readonly participant: CheckpointParticipant;
  /** Core's own: its apply reports each object it restores itself; others are reported as a whole. */
  readonly core: boolean;
  /** Where its record goes: a key of `contents`, or `contents.participants[name]`. */
  readonly recordAt: 'contents' | 'participants';
  /** What a failure while applying names. */
  readonly label: string;
}

/** The writer core's participants get: the public one plus the typed state files. @internal */
export interface CoreWriter extends CheckpointWriter {
  /** Take `file` for this participant (created folders included); returns its absolute path. */
  claim(file: string): Promise<string>;
  writeStateOf(kind: StateKind, names: StateFiles, value: unknown, what: string): Promise<void>;
}

/** The reader core's participants get. @internal */
export interface CoreReader extends CheckpointReader {
  readonly manifest: CheckpointManifest;
  readStateOf(kind: StateKind, names: StateFiles): Promise<StateValue>;
  /** A warning whatever `strict` says. */
  note(message: string): void;
}

function describe(obj: unknown): string {
  const name = (obj as object | null)?.constructor?.name;
  return name && name !== 'Object' ? name : typeof obj;
}

function toHostFor(backend: Backend<any, any, any, any>) {
  return (v: unknown): HostTensor | undefined => (backend.isTensor(v) ? backend.toHost(v) : undefined);
}

/** A file name a participant may use: relative, forward slashes, inside the folder, not the manifest. */
function checkRelative(owner: string, file: string): string {
  const norm = typeof file === 'string' && file !== '' ? posix.normalize(file) : '';
  if (
    norm === '' ||
    file.includes('\\') ||
    file.startsWith('/') ||
    norm !== file ||
    norm.split('/').some((p) => p === '..' || p === '.' || p.startsWith('.')) ||
    norm === MANIFEST_NAME
  ) {
    throw new Error(
      `Checkpoint participant "${owner}": ${JSON.stringify(file)} is not a file name it can use; use a relative path with forward slashes inside the checkpoint folder (no "..", no hidden names, not ${MANIFEST_NAME}).`,
    );
  }
  return norm;
}

/**
 * The writer of participant `owner` into the temporary folder `temp`.
 * `claimed` maps every file written so far on this rank to its participant,
 * so two participants cannot write the same file; `records` collects what
 * each recorded.
 */
export function makeWriter(
  session: CheckpointSession,
  temp: string,
  owner: string,
  claimed: Map<string, string>,
  records: Map<string, unknown>,
  core: boolean,
): CoreWriter {
  const host = session.host;
  const claim = async (file: string) => {
    const rel = checkRelative(owner, file);
    if (!core && rel.startsWith(`${PLUGINS_DIR}/`)) {
      throw new Error(`saveState: checkpoint participant "${owner}" writes ${rel}, but ${PLUGINS_DIR}/ holds the plugins' saveState namespaces; use another folder.`);
    }
    const other = claimed.get(rel);
    if (other !== undefined) {
      throw new Error(`saveState: checkpoint participant "${owner}" writes ${rel}, which participant "${other}" wrote already; each participant must use file names of its own.`);
    }
    claimed.set(rel, owner);
    if (rel.includes('/')) await fsp.mkdir(dirname(join(temp, rel)), { recursive: true });
    return join(temp, rel);
  };
  const writeStateOf = async (kind: StateKind, names: StateFiles, value: unknown, what: string) => {
    const enc = encodeState(kind, value, { toHost: toHostFor(host.backend), what });
    if (enc.tensors.size > 0) {
      await writeFileDurable(await claim(names.tensors), encodeStateTensors(enc.tensors));
      await session.written();
    }
    await writeFileDurable(await claim(names.json), enc.json);
    await session.written();
  };
  return {
    dir: temp,
    processIndex: host.processIndex,
    numProcesses: host.numProcesses,
    isMainProcess: host.isMainProcess,
    async writeTensors(file, tensors, metadata) {
      await writeSafetensors(await claim(file), tensors, { format: 'pt', ...metadata });
      await session.written();
    },
    writeState: (name, value, what) => writeStateOf('participant', stateFileNames(name), value, what),
    writeStateOf,
    claim,
    async writeFile(file, data) {
      await writeFileDurable(await claim(file), data);
      await session.written();
    },
    record(value) {
      if (!host.isMainProcess) return;
      // A copy as the manifest will hold it (and an error now for what JSON cannot hold).
      const json = JSON.stringify(value);
      records.set(owner, json === undefined ? undefined : JSON.parse(json));
    },
  };
}

/** A file that passed the manifest check but does not parse, named. */
export function unparsable(dir: string, file: string, err: unknown): CheckpointError {
  const msg = err instanceof Error ? err.message : String(err);
  const full = join(dir, file);
  return new CheckpointError(
    `loadState: ${full} cannot be parsed (${msg.includes(full) ? msg.replace(`${full}: `, '').replace(`${full} `, '') : msg}). ` +
      'Nothing was restored: loadState reads and checks every file before changing any object. Load another checkpoint (or re-save this one).',
    dir,
    file,
  );
}

async function readState(dir: string, manifest: CheckpointManifest, kind: StateKind, names: StateFiles): Promise<StateValue> {
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

/**
 * The reader of participant `name` for checkpoint `dir`. `sink.warnings`
 * receives its warnings (the driver points it at the final list before the
 * apply phase); with `strict`, `warn` throws instead.
 */
export function makeReader(
  host: CheckpointHost,
  dir: string,
  manifest: CheckpointManifest,
  recorded: unknown,
  strict: boolean,
  sink: { warnings: string[] },
): CoreReader {
  const verified = (file: string) => readVerified(dir, manifest, file);
  return {
    dir,
    manifest,
    processIndex: host.processIndex,
    numProcesses: host.numProcesses,
    recorded,
    savedWorldSize: manifest.worldSize,
    strict,
    async exists(file) {
      return Object.hasOwn(manifest.files, file);
    },
    async readTensors(file) {
      const bytes = await verified(file);
      try {
        return parseSafetensors(bytes).tensors();
      } catch (err) {
        throw unparsable(dir, file, err);
      }
    },
    readState: (name) => readState(dir, manifest, 'participant', stateFileNames(name)),
    readStateOf: (kind, names) => readState(dir, manifest, kind, names),
    readFile: verified,
    warn(message, file) {
      if (strict) throw new CheckpointError(`${message} (loadState was called with strict: true)`, dir, file);
      sink.warnings.push(message);
    },
    note(message) {
      sink.warnings.push(message);
    },
  };
}

// ---------------------------------------------------------------------------
// core's participants

function missingObject(dir: string, kind: string, index: number, saved: number, prepared: number, file: string): CheckpointError {
  return new CheckpointError(
    `loadState: ${kind} ${index} has no state in ${dir}: the checkpoint holds ${saved} ${kind}(s) but ${prepared} are prepared (${file} is not in the manifest). ` +
      'Prepare the same objects, in the same order, as the run that saved it.',
    dir,
    file,
  );
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

/**
 * Core's model participant: on every rank the full state dict of each
 * prepared model (the strategy's, or the backend's) and the save hooks; the
 * main process writes `model.safetensors`, `model_1.safetensors`, … with tied
 * weights once. Loading runs the load hooks, checks every file fits its model,
 * then loads them in order.
 */
function defaultModelParticipant(s: CheckpointSession): CheckpointParticipant {
  const host = s.host;
  return {
    name: 'models',
    writers: 'every',
    async save(w) {
      const backend = host.backend;
      const models = [...host.models];
      const weights: Array<Record<string, HostTensor>> = [];
      for (const m of models) weights.push(await host.getStateDict(m));
      for (const hook of host.saveHooks) await hook(models, weights, w.dir);
      w.record(weights.length);
      if (!w.isMainProcess) return;
      const cw = w as CoreWriter;
      const sizes = weights.map((wt) => Object.values(wt).reduce<number>((sum, t) => sum + stateTensorBytes(backend, t), 0));
      const bar = checkpointBar(mainProcessBar(s.progress, host), 'saveState: model weights', sizes.reduce((a, b) => a + b, 0), weights.length);
      try {
        for (let i = 0; i < weights.length; i++) {
          // Tied weights once, as saveModel (and Python's save_model) writes them.
          const { kept, removed } = removeSharedTensors(weights[i]);
          if (removed.length > 0) s.sharedTensors[modelFileName(i)] = removed;
          await writeSafetensors(await cw.claim(modelFileName(i)), kept, { format: 'pt' });
          bar.update(sizes[i], modelFileName(i));
          await s.written();
        }
      } finally {
        bar.close();
      }
    },
    async read(reader) {
      const r = reader as CoreReader;
      const { dir, manifest } = r;
      const parsed = new Map<number, ReturnType<typeof parseSafetensors>>();
      for (let i = 0; i < host.models.length; i++) {
        const file = modelFileName(i);
        if (!manifest.files[file]) continue; // a load hook may take this model over; checked after the hooks
        const bytes = await readVerified(dir, manifest, file);
        try {
          parsed.set(i, parseSafetensors(bytes));
        } catch (err) {
          throw unparsable(dir, file, err);
        }
      }
      return async () => {
        const backend = host.backend;
        const models = [...host.models];
        for (const hook of host.loadHooks) await hook(models, dir);
        for (let i = 0; i < models.length; i++) {
          if (!parsed.has(i)) throw missingObject(dir, 'model', i, manifest.contents.models, models.length, modelFileName(i));
        }
        // Models that do not fit are refused before anything changes (same-backend checkpoints only:
        // another backend may load through a name or layout conversion this check cannot see).
        // Load hooks may have taken models over; those are not checked.
        if (manifest.backend === backend.name) {
          for (let i = 0; i < models.length; i++) checkModelFits(backend, host.unwrapModel(models[i]), parsed.get(i)!, dir, i, s.strictModelKeys);
        }
        const modelBytes = models.reduce<number>((sum, _m, i) => sum + (manifest.files[modelFileName(i)]?.size ?? 0), 0);
        const bar = checkpointBar(mainProcessBar(s.progress, host), 'loadState: model weights', modelBytes, models.length);
        try {
          for (let i = 0; i < models.length; i++) {
            const file = modelFileName(i);
            await s.restoring(`model ${i} (${file})`, () =>
              requireCapability(backend, 'models', 'loadState').loadStateDict(host.unwrapModel(models[i]), parsed.get(i)!.tensors(), { strict: s.strictModelKeys }),
            );
            bar.update(manifest.files[file].size, file);
          }
        } finally {
          bar.close();
        }
      };
    },
  };
}

/**
 * A strategy's model participant, with the save and load hooks around it as
 * Accelerate runs them for FSDP/DeepSpeed (the hooks see the models and no
 * weights: the strategy writes them). `contents.models` still counts the models.
 */
function strategyModelParticipant(s: CheckpointSession, p: CheckpointParticipant): CheckpointParticipant {
  const host = s.host;
  return {
    name: p.name,
    writers: p.writers,
    async save(w) {
      for (const hook of host.saveHooks) await hook([...host.models], [], w.dir);
      await p.save(w);
    },
    async read(reader) {
      const apply = await p.read(reader);
      return async () => {
        for (const hook of host.loadHooks) await hook([...host.models], reader.dir);
        await apply();
      };
    },
  };
}

function optimizerState(backend: Backend<any, any, any, any>, opt: unknown, i: number): unknown {
  if (backend.optimizers?.stateDict) return backend.optimizers.stateDict(opt);
  const o = opt as { stateDict?: () => unknown };
  if (typeof o?.stateDict === 'function') return o.stateDict();
  throw new Error(
    `saveState: optimizer ${i} (${describe(opt)}) has no state dict: the "${backend.name}" backend has no optimizers.stateDict and the optimizer no stateDict() method.`,
  );
}

function schedulerState(backend: Backend<any, any, any, any>, sch: unknown, i: number): unknown {
  if (backend.optimizers?.schedulerStateDict) return backend.optimizers.schedulerStateDict(sch);
  const o = sch as { stateDict?: () => unknown };
  if (typeof o?.stateDict === 'function') return o.stateDict();
  throw new Error(
    `saveState: scheduler ${i} (${describe(sch)}) has no state dict: the "${backend.name}" backend has no optimizers.schedulerStateDict and the scheduler no stateDict() method.`,
  );
}

/** Read `count` numbered states `<base>.json`, `<base>_1.json`, …; each must be there. */
async function readNumbered(r: CoreReader, kind: StateKind, base: string, label: string, count: number, saved: number): Promise<StateValue[]> {
  const out: StateValue[] = [];
  for (let i = 0; i < count; i++) {
    const names = stateFileNames(base, i);
    if (!r.manifest.files[names.json]) throw missingObject(r.dir, label, i, saved, count, names.json);
    out.push(await r.readStateOf(kind, names));
  }
  return out;
}

function optimizersParticipant(s: CheckpointSession): CheckpointParticipant {
  const host = s.host;
  return {
    name: 'optimizers',
    async save(w) {
      const cw = w as CoreWriter;
      w.record(host.optimizers.length);
      for (let i = 0; i < host.optimizers.length; i++) {
        await cw.writeStateOf('optimizer', stateFileNames('optimizer', i), await optimizerState(host.backend, host.optimizers[i], i), `optimizer ${i}`);
      }
    },
    async read(reader) {
      const r = reader as CoreReader;
      const { dir, manifest } = r;
      const states = await readNumbered(r, 'optimizer', 'optimizer', 'optimizer', host.optimizers.length, manifest.contents.optimizers);
      return async () => {
        const backend = host.backend;
        for (let i = 0; i < host.optimizers.length; i++) {
          const names = stateFileNames('optimizer', i);
          const state = states[i];
          const opt = host.optimizers[i];
          await s.restoring(`optimizer ${i} (${names.json})`, async () => {
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
      };
    },
  };
}

function schedulersParticipant(s: CheckpointSession): CheckpointParticipant {
  const host = s.host;
  return {
    name: 'schedulers',
    async save(w) {
      const cw = w as CoreWriter;
      w.record(host.schedulers.length);
      for (let i = 0; i < host.schedulers.length; i++) {
        await cw.writeStateOf('scheduler', stateFileNames('scheduler', i), schedulerState(host.backend, host.schedulers[i], i), `scheduler ${i}`);
      }
    },
    async read(reader) {
      const r = reader as CoreReader;
      const states = await readNumbered(r, 'scheduler', 'scheduler', 'scheduler', host.schedulers.length, r.manifest.contents.schedulers);
      return async () => {
        const backend = host.backend;
        for (let i = 0; i < host.schedulers.length; i++) {
          const state = states[i];
          const sch = host.schedulers[i];
          await s.restoring(`scheduler ${i} (${stateFileNames('scheduler', i).json})`, async () => {
            if (backend.optimizers?.loadSchedulerStateDict) backend.optimizers.loadSchedulerStateDict(sch, state);
            else if (typeof (sch as Partial<Checkpointable>).loadStateDict === 'function') await (sch as Checkpointable).loadStateDict(state);
            else throw new Error(`loadState: scheduler ${i} (${describe(sch)}) cannot load a state: the "${backend.name}" backend has no optimizers.loadSchedulerStateDict and the scheduler no loadStateDict().`);
          });
        }
      };
    },
  };
}

function dataloadersParticipant(s: CheckpointSession): CheckpointParticipant {
  const host = s.host;
  return {
    name: 'dataloaders',
    async save(w) {
      const cw = w as CoreWriter;
      w.record(host.dataloaders.length);
      for (let i = 0; i < host.dataloaders.length; i++) {
        const dl = host.dataloaders[i] as { stateDict?: () => unknown };
        if (typeof dl.stateDict !== 'function') throw new Error(`saveState: data loader ${i} (${describe(dl)}) has no stateDict(); prepare it with accelerator.prepare.`);
        await cw.writeStateOf('dataloader', stateFileNames('dl_state_dict', i), dl.stateDict(), `data loader ${i}`);
      }
    },
    async read(reader) {
      const r = reader as CoreReader;
      const states: Array<StateValue | undefined> = [];
      const fromStart: number[] = [];
      for (let i = 0; i < host.dataloaders.length; i++) {
        const names = stateFileNames('dl_state_dict', i);
        if (r.manifest.files[names.json]) states.push(await r.readStateOf('dataloader', names));
        else {
          states.push(undefined);
          fromStart.push(i);
        }
      }
      if (fromStart.length > 0) {
        // E.g. a checkpoint imported from Python Accelerate, which keeps no loader position.
        r.warn(
          `${r.dir} holds no position for data loader(s) ${fromStart.join(', ')} (no ${fromStart.map((i) => stateFileNames('dl_state_dict', i).json).join(', ')}): ` +
            'they start from the beginning of their epoch. If the saving run was k batches into the epoch, skip them with `accelerator.skipFirstBatches(loader, k)`.',
          stateFileNames('dl_state_dict', fromStart[0]).json,
        );
      }
      return async () => {
        for (let i = 0; i < host.dataloaders.length; i++) {
          const state = states[i];
          if (state === undefined) continue; // warned about when reading
          await s.restoring(`data loader ${i} (${stateFileNames('dl_state_dict', i).json})`, () => (host.dataloaders[i] as { loadStateDict(x: unknown): void }).loadStateDict(state));
        }
      };
    },
  };
}

function scalerParticipant(s: CheckpointSession): CheckpointParticipant {
  const host = s.host;
  const names = stateFileNames('scaler', 0);
  return {
    name: 'scaler',
    async save(w) {
      w.record(host.scaler !== undefined);
      if (host.scaler) await (w as CoreWriter).writeStateOf('scaler', names, host.scaler.stateDict(), 'the loss scaler');
    },
    async read(reader) {
      const r = reader as CoreReader;
      const state = host.scaler && r.manifest.files[names.json] ? await r.readStateOf('scaler', names) : undefined;
      return async () => {
        if (!host.scaler) return;
        if (state !== undefined) await s.restoring(`the loss scaler (${names.json})`, () => host.scaler!.loadStateDict(state as Record<string, number>));
        else r.warn(`The fp16 loss scaler's state is not restored: ${r.dir} holds none (the saving run had no scaler); it keeps its initial scale.`, names.json);
      };
    },
  };
}

function customObjectsParticipant(s: CheckpointSession): CheckpointParticipant {
  const host = s.host;
  return {
    name: 'customObjects',
    async save(w) {
      w.record(host.customObjects.length);
      for (let i = 0; i < host.customObjects.length; i++) {
        const obj = host.customObjects[i] as Checkpointable;
        await (w as CoreWriter).writeStateOf('custom', customFileNames(i), await obj.stateDict(), `registered object ${i} (${describe(obj)})`);
      }
    },
    async read(reader) {
      const r = reader as CoreReader;
      const states: StateValue[] = [];
      for (let i = 0; i < host.customObjects.length; i++) states.push(await r.readStateOf('custom', customFileNames(i)));
      return async () => {
        for (let i = 0; i < host.customObjects.length; i++) {
          await s.restoring(`registered object ${i} (${customFileNames(i).json})`, () => (host.customObjects[i] as Checkpointable).loadStateDict(states[i]));
        }
      };
    },
  };
}

/** The number of registered objects must match the checkpoint's (checked before anything else is read). */
export function checkCustomObjectCount(host: CheckpointHost, dir: string, manifest: CheckpointManifest): void {
  const customFiles = Object.keys(manifest.files).filter((f) => /^custom_checkpoint_\d+\.json$/.test(f));
  if (customFiles.length !== host.customObjects.length) {
    throw new CheckpointError(
      `loadState: the number of custom checkpoints in ${dir} does not match the number of registered objects: found ${customFiles.length} (${customFiles.sort().join(', ') || 'none'}), registered ${host.customObjects.length}. ` +
        'Load checkpoints saved with the same objects passed to registerForCheckpointing, in the same order.',
      dir,
    );
  }
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

/** Plugins' `saveState` / `loadState` hooks, each in its namespace `plugins/<name>/`, on every rank. */
function pluginsParticipant(s: CheckpointSession): CheckpointParticipant {
  const host = s.host;
  return {
    name: 'plugins',
    writers: 'every',
    async save(w) {
      const names: string[] = [];
      for (const { plugin, fn } of pluginHooks(host.plugins, 'saveState')) {
        checkPluginName(plugin.name);
        const dir = join(w.dir, PLUGINS_DIR, plugin.name);
        await fsp.mkdir(dir, { recursive: true });
        await fn(dir, host.pluginContextOf?.(plugin) ?? host.pluginContext);
        names.push(plugin.name);
        await s.written();
      }
      w.record(names);
    },
    async read(reader) {
      const r = reader as CoreReader;
      const { dir, manifest } = r;
      const hooks = pluginHooks(host.plugins, 'loadState');
      for (const { plugin } of hooks) {
        if (!manifest.contents.plugins.includes(plugin.name)) continue;
        const prefix = `${PLUGINS_DIR}/${plugin.name}/`;
        for (const f of Object.keys(manifest.files)) if (f.startsWith(prefix)) await verifyFile(dir, manifest, f);
      }
      return async () => {
        for (const { plugin, fn } of hooks) {
          const prefix = `${PLUGINS_DIR}/${plugin.name}/`;
          if (!manifest.contents.plugins.includes(plugin.name)) {
            r.warn(`Plugin "${plugin.name}" has no namespace in ${dir} (the saving run did not have it), so its loadState hook was not called.`, prefix);
            continue;
          }
          await s.restoring(`plugin "${plugin.name}" (${prefix})`, () => fn(join(dir, PLUGINS_DIR, plugin.name), host.pluginContextOf?.(plugin) ?? host.pluginContext));
        }
      };
    },
  };
}

/** Each rank's RNG states (`random_states_<rank>`): the backend's generator, core's data generator, the step. Restored last. */
function randomStatesParticipant(s: CheckpointSession): CheckpointParticipant {
  const host = s.host;
  return {
    name: 'random_states',
    writers: 'every',
    async save(w) {
      const backend = host.backend;
      const rng: RandomStates = {
        rank: host.processIndex,
        step: host.step,
        accumulationStep: host.accumulationStep,
        backend: { name: backend.name, state: requireCapability(backend, 'rng', 'saveState').getState() },
        dataGenerator: defaultGenerator().getState(),
      };
      await (w as CoreWriter).writeStateOf('random_states', randomStatesFileNames(host.processIndex), rng as unknown as StateValue, `random states of rank ${host.processIndex}`);
    },
    async read(reader) {
      const r = reader as CoreReader;
      const { dir, manifest } = r;
      const files = randomStatesFileNames(host.processIndex);
      const rng = manifest.files[files.json] ? ((await r.readStateOf('random_states', files)) as unknown as RandomStates) : undefined;
      return async () => {
        const backend = host.backend;
        const rank = host.processIndex;
        const rngJson = files.json;
        if (rng) {
          await s.restoring(`rank ${rank}'s RNG state (${rngJson})`, () => {
            if (rng.dataGenerator !== undefined) defaultGenerator().setState(rng.dataGenerator);
          });
          if (rng.backend?.name === backend.name) await s.restoring(`rank ${rank}'s ${backend.name} RNG state (${rngJson})`, () => requireCapability(backend, 'rng', 'loadState').setState(rng.backend.state));
          else {
            r.warn(
              `Rank ${rank}'s ${backend.name} RNG state is not restored: the checkpoint holds the RNG state of the "${rng.backend?.name ?? 'no'}" backend, which this backend cannot use. Core's data generator was ${rng.dataGenerator !== undefined ? 'restored' : 'not restored either (the checkpoint holds none)'}.`,
              rngJson,
            );
          }
        } else {
          r.warn(
            `Rank ${rank}'s RNG state is not restored: ${dir} was saved by ${manifest.worldSize} process(es) and holds random_states_0..${manifest.worldSize - 1}, and rank ${rank} did not exist then. ` +
              `Its ${backend.name} generator and core's data generator keep their current state, so random draws on this rank (dropout, noise) differ from a run that never stopped; the data position, model, optimizer and schedulers are restored.`,
            rngJson,
          );
        }
        if (host.isMainProcess && manifest.worldSize > host.numProcesses) {
          const lost = Array.from({ length: manifest.worldSize - host.numProcesses }, (_, k) => `random_states_${host.numProcesses + k}`);
          r.note(
            `${lost.join(', ')} in ${dir} are not restored: the checkpoint was saved by ${manifest.worldSize} processes and this run has ${host.numProcesses}. ` +
              'The data position is world-size independent and continues exactly; the per-rank RNG streams of the missing ranks are dropped.',
          );
        }
      };
    },
  };
}

/** The participants of one save or load. */
export interface ParticipantPlan {
  /** In the order `saveState` runs them: RNG states are captured before plugin hooks and added participants run (they may draw). */
  save: ParticipantEntry[];
  /** In the order `loadState` reads and applies them: RNG states last, so nothing restored after them draws from the generators. */
  load: ParticipantEntry[];
}

/**
 * Every participant of a save or load: models (the strategy's
 * `modelCheckpoint` when it has one, else core's model files), optimizers,
 * schedulers, data loaders, the loss scaler, registered objects, plugin
 * namespaces, the participants plugins added, and each rank's RNG states.
 * @throws when two participants share a name, or one takes a core name.
 */
export function planParticipants(s: CheckpointSession): ParticipantPlan {
  const host = s.host;
  const strategy = host.strategy;
  const entry = (participant: CheckpointParticipant, core: boolean, label: string): ParticipantEntry => ({
    participant,
    core,
    recordAt: core ? 'contents' : 'participants',
    label,
  });
  const reserved = new Set<string>(CORE_PARTICIPANT_NAMES);
  const extra: ParticipantEntry[] = [];
  const taken = new Map<string, string>();
  const add = (p: CheckpointParticipant, from: string) => {
    if (typeof p?.name !== 'string' || p.name === '' || typeof p.save !== 'function' || typeof p.read !== 'function') {
      throw new TypeError(`Checkpoint participant from ${from} must have a non-empty name, save(writer) and read(reader).`);
    }
    if (reserved.has(p.name)) {
      throw new Error(`Checkpoint participant "${p.name}" from ${from} takes the name of one of core's participants (${CORE_PARTICIPANT_NAMES.join(', ')}); give it another name.`);
    }
    const other = taken.get(p.name);
    if (other !== undefined) throw new Error(`Two checkpoint participants are named "${p.name}" (from ${other} and from ${from}); each needs a unique name, its key in the manifest.`);
    taken.set(p.name, from);
  };
  let models: ParticipantEntry;
  if (strategy?.modelCheckpoint) {
    const ctx = host.strategyContext;
    if (!ctx) throw new Error(`The "${strategy.name}" strategy's modelCheckpoint needs the strategy context, which is set up when the Accelerator is ready.`);
    const p = strategy.modelCheckpoint(() => host.models, ctx);
    add(p, `the "${strategy.name}" strategy`);
    models = entry(strategyModelParticipant(s, p), false, `the models (participant "${p.name}" of the "${strategy.name}" strategy)`);
  } else models = entry(defaultModelParticipant(s), true, 'the models');
  for (const p of host.participants ?? []) {
    add(p, 'a plugin (addCheckpointParticipant)');
    extra.push(entry(p, false, `participant "${p.name}"`));
  }
  let optimizers = optimizersParticipant(s);
  if (strategy?.optimizerCheckpoint) {
    const ctx = host.strategyContext;
    if (!ctx) throw new Error(`The "${strategy.name}" strategy's optimizerCheckpoint needs the strategy context, which is set up when the Accelerator is ready.`);
    optimizers = strategy.optimizerCheckpoint(() => host.optimizers, ctx);
    if (optimizers?.name !== 'optimizers' || typeof optimizers.save !== 'function' || typeof optimizers.read !== 'function') {
      throw new TypeError(`The "${strategy.name}" strategy's optimizerCheckpoint must return a participant named "optimizers" with save(writer) and read(reader).`);
    }
  }
  // A strategy's optimizer participant takes core's place (and its `contents.optimizers` record).
  const rest = [optimizers, schedulersParticipant(s), dataloadersParticipant(s), scalerParticipant(s), customObjectsParticipant(s)].map((p) => entry(p, true, p.name));
  const rng = entry(randomStatesParticipant(s), true, 'random_states');
  const plugins = entry(pluginsParticipant(s), true, 'plugins');
  return {
    save: [models, ...rest, rng, plugins, ...extra],
    load: [models, ...rest, plugins, ...extra, rng],
  };
}
