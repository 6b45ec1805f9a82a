/**
 * Tracker classes by name: the built-in names (implemented in
 * `@accelerate/trackers`, loaded on demand) and classes users register, and
 * the mapping from events to a tracker's typed methods.
 * @module
 */
import type { LogValue, Tracker } from '../interfaces/tracker.js';
import type { TrackerEvent } from './events.js';
import { sanitizeLogValues } from './values.js';

/** What a tracker class receives when `initTrackers` builds it. */
export interface TrackerInit {
  /** Project name given to `initTrackers`. */
  project: string;
  /** `ProjectConfiguration.loggingDir`, when set. */
  loggingDir?: string;
  /** This tracker's entry of `initKwargs`. */
  options: Record<string, unknown>;
  processIndex: number;
  numProcesses: number;
  isMainProcess: boolean;
  /** Warn the user (the hub's warning channel). */
  warn: (message: string) => void;
}

/**
 * A tracker class (Accelerate's `GeneralTracker` subclass). Static fields say
 * what the hub must know before building one. (`trackerName`, because a
 * class's own `name` is its JavaScript name.)
 *
 * Keep the constructor free of side effects (no files, no network): the hub
 * may build a tracker on a process where it then does not run it (an
 * instance whose `mainProcessOnly` depends on its options). Do that work in
 * `start()`.
 */
export interface TrackerClass {
  new (init: TrackerInit): Tracker;
  /** Name users pass in `logWith`. */
  readonly trackerName: string;
  /** True when the tracker writes files under the logging directory. */
  readonly requiresLoggingDirectory: boolean;
  /** False when every process should run it; default true. */
  readonly mainProcessOnly?: boolean;
  /** Whether `logWith: 'all'` should include it here (credentials or a server configured). Default true. */
  isAvailable?(): boolean;
}

/** Facts about a built-in tracker, known to core without loading its code. */
export interface KnownTrackerInfo {
  requiresLoggingDirectory: boolean;
  mainProcessOnly: boolean;
  /** Included by `logWith: 'all'` (when available). */
  inAll: boolean;
}

/**
 * Built-in trackers of `@accelerate/trackers`, in the order `'all'` adds them
 * (Accelerate's order for the ones it has).
 */
export const KNOWN_TRACKERS: Readonly<Record<string, KnownTrackerInfo>> = Object.freeze({
  tensorboard: { requiresLoggingDirectory: true, mainProcessOnly: true, inAll: true },
  wandb: { requiresLoggingDirectory: false, mainProcessOnly: false, inAll: true },
  comet_ml: { requiresLoggingDirectory: false, mainProcessOnly: true, inAll: true },
  mlflow: { requiresLoggingDirectory: false, mainProcessOnly: true, inAll: true },
  jsonl: { requiresLoggingDirectory: true, mainProcessOnly: true, inAll: false },
  csv: { requiresLoggingDirectory: true, mainProcessOnly: true, inAll: false },
});

/** Accelerate tracker names without a TypeScript implementation, with the route to take instead. */
export const UNSUPPORTED_TRACKERS: Readonly<Record<string, string>> = Object.freeze({
  aim: "Aim reads TensorBoard logs: log with 'tensorboard' and run `aim convert tensorboard --logdir <loggingDir>`.",
  clearml: "ClearML picks up TensorBoard logs: log with 'tensorboard' and let ClearML's agent or `clearml-task` collect <loggingDir>.",
  dvclive: "log with 'csv' or 'jsonl' and point DVC at the files under <loggingDir>.",
  swanlab: "log with 'tensorboard' and use SwanLab's TensorBoard sync (`swanlab convert -t tensorboard`).",
  trackio: "log with 'jsonl' or 'tensorboard'; trackio has no JavaScript client.",
});

/** Name→class table; the hub asks it for classes users registered. */
export class TrackerRegistry {
  private readonly classes = new Map<string, TrackerClass>();

  /**
   * Add `cls` under `cls.trackerName` (Accelerate's `register_tracker_class`).
   * Checks the static fields; a second class with the same name replaces the
   * first and `warn` is told.
   */
  register(cls: TrackerClass, warn?: (message: string) => void): void {
    checkTrackerClass(cls);
    if (this.classes.has(cls.trackerName) && this.classes.get(cls.trackerName) !== cls) {
      warn?.(`registerTrackerClass: a tracker named "${cls.trackerName}" was already registered; ${cls.name || 'the new class'} replaces it.`);
    }
    this.classes.set(cls.trackerName, cls);
  }

  /** The class registered as `name`. */
  get(name: string): TrackerClass | undefined {
    return this.classes.get(name);
  }

  /** Registered names, in registration order. */
  names(): string[] {
    return [...this.classes.keys()];
  }

  /** Forget every registration (tests). */
  clear(): void {
    this.classes.clear();
  }
}

/** The registry {@link registerTrackerClass} fills and hubs use by default. */
export const defaultTrackerRegistry = new TrackerRegistry();

/** Make `cls` usable by name in `logWith` of every Accelerator created afterwards. */
export function registerTrackerClass(cls: TrackerClass, warn?: (message: string) => void): void {
  defaultTrackerRegistry.register(cls, warn);
}

/** Throws (naming the missing piece) unless `cls` looks like a tracker class. */
export function checkTrackerClass(cls: unknown): asserts cls is TrackerClass {
  if (typeof cls !== 'function') throw new TypeError(`registerTrackerClass: expected a tracker class, got ${typeof cls}.`);
  const c = cls as Partial<TrackerClass> & { name?: string };
  const label = c.name || 'the class';
  if (typeof c.trackerName !== 'string' || c.trackerName.trim() === '') {
    throw new TypeError(`registerTrackerClass: ${label} has no static trackerName; add \`static readonly trackerName = 'my-tracker'\`.`);
  }
  if (typeof c.requiresLoggingDirectory !== 'boolean') {
    throw new TypeError(`registerTrackerClass: ${label} ("${c.trackerName}") has no static requiresLoggingDirectory; add \`static readonly requiresLoggingDirectory = false\` (or true if it writes files).`);
  }
  const proto = (cls as { prototype?: Record<string, unknown> }).prototype ?? {};
  for (const m of ['log', 'storeInitConfiguration', 'finish'] as const) {
    if (typeof proto[m] !== 'function') {
      throw new TypeError(`registerTrackerClass: ${label} ("${c.trackerName}") does not implement ${m}(); every tracker needs log, storeInitConfiguration and finish.`);
    }
  }
}

/** Throws (naming the missing piece) unless `t` is a usable tracker instance. */
export function checkTrackerInstance(t: unknown): asserts t is Tracker {
  const o = t as Partial<Tracker> | null;
  if (!o || typeof o !== 'object') throw new TypeError(`logWith: expected a tracker name or a tracker object, got ${o === null ? 'null' : typeof o}.`);
  const label = typeof o.name === 'string' && o.name ? `tracker "${o.name}"` : 'a tracker object';
  if (typeof o.name !== 'string' || o.name.trim() === '') throw new TypeError('logWith: a tracker object has no name; give it a non-empty `name`.');
  if (typeof o.requiresLoggingDirectory !== 'boolean') throw new TypeError(`logWith: ${label} has no boolean requiresLoggingDirectory.`);
  if (typeof o.mainProcessOnly !== 'boolean') throw new TypeError(`logWith: ${label} has no boolean mainProcessOnly.`);
  if (typeof o.onEvent !== 'function') {
    for (const m of ['log', 'storeInitConfiguration', 'finish'] as const) {
      if (typeof o[m] !== 'function') throw new TypeError(`logWith: ${label} does not implement ${m}(); implement it, or onEvent() to receive the raw event stream.`);
    }
  }
}

/**
 * Deliver `event` to `tracker`: `onEvent` when it has one, else the matching
 * typed method (`metrics` → `log` with sanitized values, `text` → `logText`
 * or `log`, `config` → `storeInitConfiguration`, …). Events a tracker has no
 * method for are skipped. `start` and `finish` are lifecycle markers, not
 * calls: the hub calls `start()`/`finish()` itself.
 */
export function dispatchEvent(tracker: Tracker, event: TrackerEvent, sanitized?: Record<string, LogValue>): void | Promise<void> {
  if (tracker.onEvent) return tracker.onEvent(event);
  switch (event.type) {
    case 'config':
      return tracker.storeInitConfiguration(event.values);
    case 'metrics': {
      const values = sanitized ?? sanitizeLogValues(event.values).values;
      if (Object.keys(values).length === 0) return;
      return tracker.log(values, event.step, event.kwargs?.[tracker.name]);
    }
    case 'text':
      return tracker.logText ? tracker.logText(event.values, event.step) : tracker.log(event.values, event.step);
    case 'images':
      return tracker.logImages?.(event.images, event.step);
    case 'histograms':
      return tracker.logHistograms?.(event.values, event.step);
    case 'artifact':
      return tracker.logArtifact?.(event.path, { name: event.name, step: event.step });
    case 'start':
    case 'finish':
      return;
  }
}

/** A tracker that does nothing: what `getTracker` returns on a process where a main-process-only tracker does not run. */
export class BlankTracker implements Tracker {
  readonly requiresLoggingDirectory = false;
  readonly mainProcessOnly = true;
  readonly tracker = undefined;
  constructor(readonly name: string) {}
  storeInitConfiguration(): void {}
  log(): void {}
  logImages(): void {}
  logText(): void {}
  logHistograms(): void {}
  logArtifact(): void {}
  finish(): void {}
}
