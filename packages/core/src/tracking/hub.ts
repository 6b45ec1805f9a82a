/**
 * `TrackerHub`: the part of the Accelerator that owns experiment trackers.
 * It resolves `logWith`, builds trackers in `initTrackers`, turns `log`,
 * images, text, histograms and artifacts into {@link TrackerEvent}s and fans
 * them out, main process only unless a tracker asks otherwise.
 *
 * Training never stops because of tracking: bad values are skipped with one
 * warning per key (and kept in the JSONL stream), and a tracker that throws,
 * rejects or hangs is disabled with a warning that says how to replay its
 * events from the JSONL stream.
 * @module
 */
import { statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { hostname } from 'node:os';
import type { LogValue, Tracker } from '../interfaces/tracker.js';
import { getLogger } from '../utils/logging.js';
import { HostTensor } from '../tensor/host-tensor.js';
import { EVENT_FORMAT_VERSION, type FinishEvent, type HistogramData, type TrackerEvent, type TrackerImage } from './events.js';
import {
  BlankTracker,
  KNOWN_TRACKERS,
  UNSUPPORTED_TRACKERS,
  checkTrackerClass,
  checkTrackerInstance,
  defaultTrackerRegistry,
  dispatchEvent,
  type TrackerClass,
  type TrackerRegistry,
} from './registry.js';
import { loadPackageEntry, recordDiscoveryFailure, scanAcceleratePackages, type ScanOptions } from '../registry/discovery.js';
import { histogramOf, normalizeImage, sanitizeLogValues, type ImageInput } from './values.js';

/** One entry of `logWith`: a tracker name, a tracker class, or a tracker object. */
export type LogWithEntry = string | Tracker | TrackerClass;

/** Accelerate's `log_with`: `'all'`, one entry, or a list of entries (which may contain `'all'`). */
export type LogWith = LogWithEntry | readonly LogWithEntry[];

/** Options of {@link TrackerHub}. */
export interface TrackerHubOptions {
  /** Which trackers to run. Undefined: none (and `log` does nothing). */
  logWith?: LogWith;
  /** `ProjectConfiguration.loggingDir`; trackers that write files need it. */
  loggingDir?: string;
  /** Whether this process is the main one (read at `initTrackers`). Default: always true. */
  isMainProcess?: () => boolean;
  /** Global rank of this process, stamped on every event. Default 0. */
  processIndex?: () => number;
  /** World size, recorded in the start event. Default 1. */
  numProcesses?: () => number;
  /** Where warnings go. Default: the `accelerate.tracking` logger (stderr when no state exists). */
  warn?: (message: string) => void;
  /** Where debug notes go (trackers skipped by `'all'`, …). Default: nowhere. */
  debug?: (message: string) => void;
  /** Registry of user tracker classes. Default: the one {@link registerTrackerClass} fills. */
  registry?: TrackerRegistry;
  /** Loads the tracker classes installed packages provide. Default: {@link loadDiscoveredTrackers} (packages with an `accelerate.trackers` field). */
  loadBuiltins?: () => Promise<Record<string, TrackerClass>>;
  /**
   * Write the JSONL event stream (the `jsonl` tracker) whenever trackers run
   * and a logging directory is set, so failed trackers can be replayed later.
   * Default true.
   */
  eventLog?: boolean;
  /** A tracker call that has not settled after this many ms counts as failed. Default 60000. */
  callTimeoutMs?: number;
  /** Clock in seconds since the epoch (tests). Default `Date.now() / 1000`. */
  now?: () => number;
}

/** Why a tracker was switched off. */
export interface DisabledTracker {
  name: string;
  /** The call that failed (`start`, `log (step 3)`, …). */
  during: string;
  error: Error;
}

interface Slot {
  name: string;
  tracker: Tracker;
  pending: Promise<void> | null;
  disabled: boolean;
}

type Planned = { kind: 'name'; name: string } | { kind: 'class'; cls: TrackerClass } | { kind: 'instance'; tracker: Tracker };

/** The package to suggest (hint text only) when a built-in tracker name has no installed provider. */
const BUILTIN_PACKAGE_HINT = '@accelerate/trackers';

/** Thrown by {@link loadDiscoveredTrackers} when no installed package provides any tracker. */
class NoTrackerPackageError extends Error {
  readonly code = 'ACCELERATE_NO_TRACKER_PACKAGE';
}

/**
 * The tracker classes of every installed package whose package.json has an
 * `accelerate.trackers` entry (a module exporting `accelerateTrackers`:
 * `{ [logWithName]: TrackerClass }`), merged, the nearest package first.
 * Packages that fail to load are skipped (and listed in `discoveryFailures()`);
 * when none loads, the error says why.
 */
export async function loadDiscoveredTrackers(options: ScanOptions = {}): Promise<Record<string, TrackerClass>> {
  const packages = scanAcceleratePackages(options).filter((p) => p.trackers);
  const classes: Record<string, TrackerClass> = {};
  const problems: string[] = [];
  for (const pkg of packages) {
    try {
      const mod = await loadPackageEntry<{ accelerateTrackers?: Record<string, TrackerClass> }>(pkg, 'trackers');
      if (!mod.accelerateTrackers || typeof mod.accelerateTrackers !== 'object') {
        const reason = `${pkg.name}'s trackers entry ${pkg.trackers!.entry} does not export accelerateTrackers`;
        recordDiscoveryFailure(pkg.name, 'trackers', reason);
        problems.push(reason);
        continue;
      }
      for (const [name, cls] of Object.entries(mod.accelerateTrackers)) if (!(name in classes)) classes[name] = cls;
    } catch (e) {
      problems.push(asError(e).message);
    }
  }
  if (packages.length === 0) throw new NoTrackerPackageError('no installed package declares "accelerate.trackers" in its package.json');
  if (Object.keys(classes).length === 0 && problems.length > 0) throw new Error(problems.join('; '));
  return classes;
}

function defaultWarn(message: string): void {
  try {
    getLogger('accelerate.tracking').warning(message, { mainProcessOnly: false });
  } catch {
    process.stderr.write(`WARNING:accelerate.tracking:${message}\n`);
  }
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return !!x && (typeof x === 'object' || typeof x === 'function') && typeof (x as { then?: unknown }).then === 'function';
}

/**
 * The Accelerator's trackers. Build it with the Accelerator's `logWith` and
 * logging directory; `initTrackers` then creates and starts them.
 *
 * @example
 * const hub = new TrackerHub({ logWith: ['tensorboard'], loggingDir: 'runs' });
 * await hub.initTrackers('my-project', { lr: 1e-3 });
 * hub.log({ loss: 0.5 }, 1);
 * await hub.endTraining();
 */
export class TrackerHub {
  private readonly options: TrackerHubOptions;
  private readonly planned: Planned[] = [];
  private readonly wantsAll: boolean;
  private readonly localClasses = new Map<string, TrackerClass>();
  private readonly registry: TrackerRegistry;
  private slots: Slot[] = [];
  /** Names planned but not run on this process (main-process-only trackers off the main process). */
  private offProcess = new Set<string>();
  private readonly warned = new Set<string>();
  private readonly disabledList: DisabledTracker[] = [];
  private initialized = false;
  private builtins: Promise<Record<string, TrackerClass>> | undefined;

  constructor(options: TrackerHubOptions = {}) {
    this.options = options;
    this.registry = options.registry ?? defaultTrackerRegistry;
    const raw = options.logWith;
    const entries: LogWithEntry[] = raw === undefined || raw === null ? [] : Array.isArray(raw) ? [...(raw as LogWithEntry[])] : [raw as LogWithEntry];
    let all = false;
    const seen = new Set<string>();
    for (const entry of entries) {
      if (entry === 'all') {
        all = true;
        continue;
      }
      let name: string;
      let requiresDir: boolean;
      if (typeof entry === 'string') {
        name = entry;
        requiresDir = this.lookupRequiresDir(entry);
        if (!seen.has(name)) this.planned.push({ kind: 'name', name });
      } else if (typeof entry === 'function') {
        checkTrackerClass(entry);
        name = entry.trackerName;
        requiresDir = entry.requiresLoggingDirectory;
        this.localClasses.set(name, entry);
        if (!seen.has(name)) this.planned.push({ kind: 'class', cls: entry });
      } else {
        checkTrackerInstance(entry);
        name = entry.name;
        requiresDir = false; // a ready-made object has already chosen where it writes
        if (!seen.has(name)) this.planned.push({ kind: 'instance', tracker: entry });
      }
      seen.add(name);
      if (requiresDir && !options.loggingDir) {
        throw new Error(
          `logWith: tracker "${name}" writes files and needs a logging directory, but none is set. ` +
            `Pass projectConfig: { projectDir: '...' } (or loggingDir) to the Accelerator, or remove "${name}" from logWith.`,
        );
      }
    }
    this.wantsAll = all;
    if (raw !== undefined && raw !== null && entries.length === 0) {
      this.warn('logWith is an empty list, so no tracker will run; leave logWith out, or name the trackers you want.');
    }
  }

  private lookupRequiresDir(name: string): boolean {
    const cls = this.localClasses.get(name) ?? this.registry.get(name);
    if (cls) return cls.requiresLoggingDirectory;
    const known = KNOWN_TRACKERS[name];
    if (known) return known.requiresLoggingDirectory;
    const valid = [...new Set(['all', ...Object.keys(KNOWN_TRACKERS), ...this.registry.names()])];
    const hint = UNSUPPORTED_TRACKERS[name] ? ` "${name}" has no TypeScript tracker: ${UNSUPPORTED_TRACKERS[name]}` : '';
    throw new Error(`logWith: unknown tracker "${name}". Valid names: ${valid.join(', ')}; or pass a tracker object or class (registerTrackerClass).${hint}`);
  }

  /** Names of the trackers `logWith` asked for (before `'all'` is expanded), in order. */
  get requestedNames(): string[] {
    return this.planned.map((p) => (p.kind === 'name' ? p.name : p.kind === 'class' ? p.cls.trackerName : p.tracker.name));
  }

  /** Trackers running on this process (failed ones excluded). */
  get trackers(): Tracker[] {
    return this.slots.filter((s) => !s.disabled).map((s) => s.tracker);
  }

  /** Trackers switched off after a failure, with the error. */
  get disabledTrackers(): readonly DisabledTracker[] {
    return this.disabledList;
  }

  /** Path of the JSONL event stream this process writes, when the `jsonl` tracker runs. */
  get eventLogPath(): string | undefined {
    const slot = this.slots.find((s) => s.name === 'jsonl');
    const p = (slot?.tracker as { path?: unknown } | undefined)?.path;
    return typeof p === 'string' ? p : undefined;
  }

  /** Register a tracker class for this hub's `logWith` names (and globally, like Accelerate's `register_tracker_class`). */
  registerTrackerClass(cls: TrackerClass): void {
    this.registry.register(cls, (m) => this.warn(m));
  }

  private now(): number {
    return this.options.now ? this.options.now() : Date.now() / 1000;
  }

  private rank(): number {
    return this.options.processIndex ? this.options.processIndex() : 0;
  }

  private warn(message: string): void {
    (this.options.warn ?? defaultWarn)(message);
  }

  private warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.warn(message);
  }

  private loadBuiltins(): Promise<Record<string, TrackerClass>> {
    this.builtins ??= (this.options.loadBuiltins ?? loadDiscoveredTrackers)();
    return this.builtins;
  }

  private async classFor(name: string, explicit: boolean): Promise<TrackerClass | undefined> {
    const own = this.localClasses.get(name) ?? this.registry.get(name);
    if (own) return own;
    try {
      const cls = (await this.loadBuiltins())[name];
      if (!cls) throw new Error(`it has no tracker named "${name}"`);
      return cls;
    } catch (e) {
      const err = asError(e);
      const missing = (err as { code?: string }).code === 'ACCELERATE_NO_TRACKER_PACKAGE';
      const from = name in KNOWN_TRACKERS ? ` comes from ${BUILTIN_PACKAGE_HINT}, which` : '';
      const msg = missing
        ? from
          ? `tracker "${name}"${from} is not installed: npm install ${BUILTIN_PACKAGE_HINT}. Training continues without "${name}".`
          : `no installed package provides tracker "${name}" (none declares "accelerate.trackers" in its package.json). Training continues without "${name}".`
        : `tracker "${name}"${from} could not be loaded (${err.message}); check that it and @accelerate/core are the same version. Training continues without "${name}".`;
      if (explicit) this.warn(msg);
      else this.options.debug?.(msg);
      return undefined;
    }
  }

  /**
   * Create and start the trackers (Accelerate's `init_trackers`): each class
   * is built with `initKwargs[name]`, then `start()`, then the config is
   * stored. On other processes main-process-only trackers are not built.
   * A tracker that fails here is disabled with a warning; this never throws
   * for a tracker failure.
   */
  async initTrackers(project: string, config: Record<string, unknown> = {}, initKwargs: Record<string, Record<string, unknown>> = {}): Promise<void> {
    if (typeof project !== 'string' || project.trim() === '') {
      throw new TypeError(`initTrackers: projectName must be a non-empty string, got ${JSON.stringify(project)}.`);
    }
    if (this.initialized) {
      throw new Error('initTrackers was already called for this run; call endTraining() first to start a new one.');
    }
    this.initialized = true;
    const isMain = this.options.isMainProcess ? this.options.isMainProcess() : true;
    const numProcesses = this.options.numProcesses ? this.options.numProcesses() : 1;
    const loggingDir = this.options.loggingDir;

    // What to build: explicit entries, 'all' expansions, and the JSONL stream first.
    const plan: Array<{ name: string; cls?: TrackerClass; instance?: Tracker; explicit: boolean }> = [];
    const names = new Set<string>();
    const add = (p: { name: string; cls?: TrackerClass; instance?: Tracker; explicit: boolean }) => {
      if (names.has(p.name)) return;
      names.add(p.name);
      plan.push(p);
    };
    const anyTracker = this.planned.length > 0 || this.wantsAll;
    const jsonlAsked = this.planned.some((p) => p.kind === 'name' && p.name === 'jsonl');
    if (anyTracker && !jsonlAsked && (this.options.eventLog ?? true)) {
      if (loggingDir) {
        const cls = await this.classFor('jsonl', false);
        if (cls) add({ name: 'jsonl', cls, explicit: false });
      } else {
        this.options.debug?.('No JSONL event stream: no logging directory is set.');
      }
    }
    for (const p of this.planned) {
      if (p.kind === 'instance') add({ name: p.tracker.name, instance: p.tracker, explicit: true });
      else if (p.kind === 'class') add({ name: p.cls.trackerName, cls: p.cls, explicit: true });
      else {
        const cls = await this.classFor(p.name, true);
        if (cls) add({ name: p.name, cls, explicit: true });
      }
    }
    if (this.wantsAll) {
      const candidates = [...Object.keys(KNOWN_TRACKERS).filter((n) => KNOWN_TRACKERS[n].inAll), ...this.registry.names()];
      for (const name of candidates) {
        if (names.has(name)) continue;
        const cls = await this.classFor(name, false);
        if (!cls) continue;
        if (cls.isAvailable && !cls.isAvailable()) {
          this.options.debug?.(`logWith 'all': skipping "${name}": not configured on this machine.`);
          continue;
        }
        if (cls.requiresLoggingDirectory && !loggingDir) {
          this.warn(`logWith 'all': skipping "${name}": it writes files and no logging directory is set (projectConfig.loggingDir).`);
          continue;
        }
        add({ name, cls, explicit: false });
      }
    }

    const warn = (m: string) => this.warn(m);
    for (const p of plan) {
      const mainOnly = p.instance ? p.instance.mainProcessOnly : p.cls!.mainProcessOnly !== false;
      if (mainOnly && !isMain) {
        this.offProcess.add(p.name);
        continue;
      }
      let tracker: Tracker;
      if (p.instance) tracker = p.instance;
      else {
        try {
          tracker = new p.cls!({ project, loggingDir, options: initKwargs[p.name] ?? {}, processIndex: this.rank(), numProcesses, isMainProcess: isMain, warn });
        } catch (e) {
          this.recordFailure(p.name, 'its constructor', asError(e));
          continue;
        }
        // A class may leave the choice to its options (the JSONL tracker's allRanks): the instance decides.
        if (tracker.mainProcessOnly && !isMain) {
          this.offProcess.add(p.name);
          continue;
        }
      }
      const slot: Slot = { name: p.name, tracker, pending: null, disabled: false };
      this.slots.push(slot);
      if (tracker.start) void this.schedule(slot, () => tracker.start!(), 'start');
    }
    const start: TrackerEvent = {
      type: 'start',
      format: 'accelerate-events',
      version: EVENT_FORMAT_VERSION,
      project,
      numProcesses,
      host: hostname(),
      pid: process.pid,
      time: this.now(),
      rank: this.rank(),
    };
    this.emit(start, 'start');
    this.emit({ type: 'config', values: { ...config }, time: this.now(), rank: this.rank() }, 'storeInitConfiguration');
    await this.flush();
  }

  /**
   * Log `values` at `step` to every tracker (Accelerate's `Accelerator.log`).
   * `logKwargs` maps a tracker name to extra options for that tracker.
   * Returns when every tracker has taken the values; there is no need to
   * await it, nothing it does can throw.
   */
  log(values: Record<string, unknown>, step?: number, logKwargs?: Record<string, Record<string, unknown>>): Promise<void> {
    if (this.slots.length === 0) return Promise.resolve();
    if (values === null || typeof values !== 'object' || Array.isArray(values)) {
      this.warnOnce('log:values', `log: values must be an object like { loss: 0.5 }, got ${values === null ? 'null' : Array.isArray(values) ? 'an array' : typeof values}; nothing logged.`);
      return Promise.resolve();
    }
    const s = this.checkStep(step, 'log');
    const event: TrackerEvent = { type: 'metrics', values: { ...values }, time: this.now(), rank: this.rank() };
    if (s !== undefined) event.step = s;
    if (logKwargs && Object.keys(logKwargs).length > 0) event.kwargs = logKwargs;
    const { values: clean, problems } = sanitizeLogValues(event.values);
    for (const p of problems) {
      const kept = this.eventLogPath ? `; it is kept in the JSONL event stream (${this.eventLogPath})` : '';
      this.warnOnce(
        `${p.kind}:${p.key}`,
        `log: "${p.key}" is ${p.value}${s !== undefined ? ` at step ${s}` : ''}: trackers take finite numbers, strings, booleans and { name: number } groups, ` +
          `so it is skipped for them${kept}. Training continues; this warning is shown once per key.`,
      );
    }
    return this.emit(event, s !== undefined ? `log (step ${s})` : 'log', clean);
  }

  /** Log images (PNG bytes, raw pixels or HWC tensors) at `step`. An image that cannot be read is skipped with a warning. */
  logImages(images: Record<string, ImageInput>, step?: number): Promise<void> {
    if (this.slots.length === 0) return Promise.resolve();
    const out: Record<string, TrackerImage> = {};
    for (const [key, img] of Object.entries(images)) {
      try {
        out[key] = normalizeImage(key, img);
      } catch (e) {
        this.warnOnce(`image:${key}`, `${asError(e).message} It is skipped; training continues (shown once per key).`);
      }
    }
    if (Object.keys(out).length === 0) return Promise.resolve();
    const s = this.checkStep(step, 'logImages');
    return this.emit({ type: 'images', images: out, step: s, time: this.now(), rank: this.rank() }, 'logImages');
  }

  /** Log text at `step` (TensorBoard's text plugin, MLflow's text artifacts, …). */
  logText(values: Record<string, string>, step?: number): Promise<void> {
    if (this.slots.length === 0) return Promise.resolve();
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(values)) out[k] = typeof v === 'string' ? v : String(v);
    const s = this.checkStep(step, 'logText');
    return this.emit({ type: 'text', values: out, step: s, time: this.now(), rank: this.rank() }, 'logText');
  }

  /** Log histograms of `values` (arrays, typed arrays or tensors, binned here into `bins` buckets) at `step`. */
  logHistograms(values: Record<string, ArrayLike<number | bigint> | HostTensor | HistogramData>, step?: number, bins = 30): Promise<void> {
    if (this.slots.length === 0) return Promise.resolve();
    const out: Record<string, HistogramData> = {};
    for (const [k, v] of Object.entries(values)) {
      out[k] = !(v instanceof HostTensor) && 'bucketLimits' in (v as object) ? (v as HistogramData) : histogramOf(v as ArrayLike<number>, bins);
    }
    const s = this.checkStep(step, 'logHistograms');
    return this.emit({ type: 'histograms', values: out, step: s, time: this.now(), rank: this.rank() }, 'logHistograms');
  }

  /** Log a file the run produced; the stream records its path and size. A missing file is skipped with a warning. */
  logArtifact(path: string, options: { name?: string; step?: number } = {}): Promise<void> {
    if (this.slots.length === 0) return Promise.resolve();
    const abs = resolve(path);
    let size: number;
    try {
      size = statSync(abs).size;
    } catch (e) {
      this.warn(`logArtifact: cannot read ${abs} (${asError(e).message}); it is not logged. Training continues.`);
      return Promise.resolve();
    }
    const s = this.checkStep(options.step, 'logArtifact');
    return this.emit({ type: 'artifact', name: options.name ?? basename(abs), path: abs, size, step: s, time: this.now(), rank: this.rank() }, 'logArtifact');
  }

  /**
   * The tracker called `name` (Accelerate's `get_tracker`); with
   * `unwrap: true` its underlying client (`tracker.tracker`). On a process
   * where a main-process-only tracker does not run, a tracker that does
   * nothing. Throws for a name that is not running, listing those that are.
   */
  getTracker(name: string, options?: { unwrap?: false }): Tracker;
  getTracker(name: string, options: { unwrap: true }): unknown;
  getTracker(name: string, options: { unwrap?: boolean } = {}): Tracker | unknown {
    const slot = this.slots.find((s) => s.name === name);
    if (slot) return options.unwrap ? slot.tracker.tracker : slot.tracker;
    if (this.offProcess.has(name)) return new BlankTracker(name);
    const active = [...this.slots.map((s) => s.name), ...this.offProcess];
    throw new Error(
      `getTracker: no tracker named "${name}" in this run. ` +
        (active.length ? `Running trackers: ${active.join(', ')}.` : 'No tracker is running: pass logWith to the Accelerator and call initTrackers first.'),
    );
  }

  /** Wait until every tracker has handled every event given so far. */
  async flush(): Promise<void> {
    for (;;) {
      const pending = this.slots.map((s) => s.pending).filter((p): p is Promise<void> => p !== null);
      if (pending.length === 0) return;
      await Promise.all(pending);
    }
  }

  /**
   * End the run (Accelerate's `end_training`): a `finish` event, then every
   * tracker's `finish()`, awaited. Safe to call twice; after it a new
   * `initTrackers` may start another run.
   */
  async endTraining(status: FinishEvent['status'] = 'finished'): Promise<void> {
    if (!this.initialized) return;
    if (this.slots.length > 0) {
      this.emit({ type: 'finish', status, time: this.now(), rank: this.rank() }, 'finish event');
      for (const slot of this.slots) void this.schedule(slot, () => slot.tracker.finish(), 'finish');
      await this.flush();
    }
    this.slots = [];
    this.offProcess = new Set();
    this.initialized = false;
  }

  private checkStep(step: unknown, where: string): number | undefined {
    if (step === undefined || step === null) return undefined;
    if (typeof step === 'number' && Number.isSafeInteger(step) && step >= 0) return step;
    this.warnOnce(
      `step:${where}`,
      `${where}: step must be a whole number >= 0, got ${typeof step === 'number' ? step : typeof step}; the values are logged without a step. Training continues; shown once.`,
    );
    return undefined;
  }

  private emit(event: TrackerEvent, what: string, sanitized?: Record<string, LogValue>): Promise<void> {
    const runs: Promise<void>[] = [];
    for (const slot of this.slots) {
      const p = this.schedule(slot, () => dispatchEvent(slot.tracker, event, sanitized), what);
      if (p) runs.push(p);
    }
    return runs.length ? Promise.all(runs).then(() => undefined) : Promise.resolve();
  }

  /**
   * Run `fn` for `slot` after its earlier calls (so each tracker sees events
   * in order), synchronously when nothing is pending. Failures disable the
   * tracker; the returned promise never rejects.
   */
  private schedule(slot: Slot, fn: () => unknown, what: string): Promise<void> | undefined {
    if (slot.disabled) return undefined;
    const run = (): Promise<void> | undefined => {
      if (slot.disabled) return undefined;
      let r: unknown;
      try {
        r = fn();
      } catch (e) {
        this.fail(slot, what, e);
        return undefined;
      }
      if (!isThenable(r)) return undefined;
      return this.withTimeout(Promise.resolve(r), what).then(
        () => undefined,
        (e) => this.fail(slot, what, e),
      );
    };
    const p = slot.pending ? slot.pending.then(run) : run();
    if (!p) return undefined;
    slot.pending = p;
    void p.then(() => {
      if (slot.pending === p) slot.pending = null;
    });
    return p;
  }

  private withTimeout(p: Promise<unknown>, what: string): Promise<unknown> {
    const ms = this.options.callTimeoutMs ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
      timer.unref?.();
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  private fail(slot: Slot, what: string, e: unknown): void {
    if (slot.disabled) return;
    slot.disabled = true;
    this.recordFailure(slot.name, what, asError(e));
  }

  private recordFailure(name: string, during: string, error: Error): void {
    this.disabledList.push({ name, during, error });
    const path = this.eventLogPath;
    let tail: string;
    if (name === 'jsonl') tail = 'Events are no longer written to the JSONL stream.';
    else if (path) tail = `Every event stays in the JSONL stream ${path}: send them to it later with \`accelerate replay ${path} --to ${name}\`.`;
    else tail = 'No JSONL event stream is written (set a logging directory to keep one), so these events are lost for it.';
    this.warn(`Tracker "${name}" failed in ${during}: ${error.message}. It is disabled for the rest of the run; training continues. ${tail}`);
  }
}
