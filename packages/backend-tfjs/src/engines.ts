/**
 * Which TensorFlow.js engine runs the computation, chosen explicitly:
 *
 * - `tfjs-node-gpu` / `tfjs-node` (TensorFlow's C library, backend name
 *   `tensorflow`) when the user installed them — optional peer dependencies;
 * - `wasm` (`@tensorflow/tfjs-backend-wasm`, SIMD, one thread) by default;
 * - `cpu` (pure JavaScript, ~30x slower than wasm) as the last resort.
 *
 * Each candidate is in one of three states: `absent` (not installed),
 * `broken` (installed but fails to load or initialise, with the reason), or
 * `usable`. `tf.setBackend` resolves `false` on failure instead of throwing,
 * and tfjs then quietly keeps another backend; here every result is checked,
 * an explicitly requested engine that fails throws, and in `auto` mode every
 * step down the list is announced with a warning naming the reason.
 * @module
 */
import { createRequire } from 'node:module';
import { tf } from './tf.js';

/** An engine this package can run on. */
export type TfjsEngine = 'tfjs-node-gpu' | 'tfjs-node' | 'wasm' | 'cpu';

/** `auto` picks the best usable engine: tfjs-node-gpu, tfjs-node, wasm, cpu. */
export type TfjsEnginePreference = TfjsEngine | 'auto';

/** Every engine, best first. */
export const TFJS_ENGINES: readonly TfjsEngine[] = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];

/** Environment variable that picks the engine (`auto` when unset). */
export const TFJS_ENGINE_ENV = 'ACCELERATE_TFJS_BACKEND';

/** What is known about one engine. */
export interface TfjsEngineStatus {
  engine: TfjsEngine;
  /** npm package that provides it. */
  package: string;
  /** tfjs backend name it registers (`tensorflow`, `wasm`, `cpu`). */
  tfBackend: string;
  state: 'absent' | 'broken' | 'usable';
  /** Why it is absent or broken. */
  reason?: string;
  /** Package version, when installed. */
  version?: string;
}

/** The outcome of {@link selectTfjsBackend}. */
export interface TfjsSelection {
  /** The engine now active. */
  engine: TfjsEngine;
  /** tfjs backend name now active (`tf.getBackend()`). */
  tfBackend: string;
  /** Engines tried before this one in `auto` mode and why they were passed over. */
  skipped: Array<{ engine: TfjsEngine; reason: string }>;
}

const PACKAGES: Record<TfjsEngine, string> = {
  'tfjs-node-gpu': '@tensorflow/tfjs-node-gpu',
  'tfjs-node': '@tensorflow/tfjs-node',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs',
};
const TF_BACKEND: Record<TfjsEngine, string> = { 'tfjs-node-gpu': 'tensorflow', 'tfjs-node': 'tensorflow', wasm: 'wasm', cpu: 'cpu' };

const require = createRequire(import.meta.url);
const loadResults = new Map<TfjsEngine, Promise<TfjsEngineStatus>>();
/** Engines that loaded but failed to initialise, with the reason (shown by describeTfjsBackends). */
const initFailures = new Map<TfjsEngine, string>();

function packageVersion(pkg: string): string | undefined {
  try {
    return (require(`${pkg}/package.json`) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

function isNotFound(e: unknown, pkg: string): boolean {
  const err = e as NodeJS.ErrnoException;
  return (err?.code === 'MODULE_NOT_FOUND' || err?.code === 'ERR_MODULE_NOT_FOUND') && String(err.message).includes(pkg);
}

/** Load the package of `engine` (registering its tfjs backend) and report its state. Memoised. */
function loadEngine(engineName: TfjsEngine): Promise<TfjsEngineStatus> {
  let p = loadResults.get(engineName);
  if (!p) {
    p = (async (): Promise<TfjsEngineStatus> => {
      const pkg = PACKAGES[engineName];
      const base = { engine: engineName, package: pkg, tfBackend: TF_BACKEND[engineName] };
      if (engineName === 'cpu') return { ...base, state: 'usable', version: tf.version_core };
      try {
        require.resolve(pkg);
      } catch (e) {
        if (isNotFound(e, pkg)) return { ...base, state: 'absent', reason: `${pkg} is not installed` };
        return { ...base, state: 'broken', reason: (e as Error).message };
      }
      const version = packageVersion(pkg);
      try {
        if (engineName === 'wasm') await withoutGlueListeners(() => import('@tensorflow/tfjs-backend-wasm'));
        else require(pkg); // CommonJS packages; loading registers the `tensorflow` backend
      } catch (e) {
        return { ...base, version, state: 'broken', reason: `${pkg} is installed but failed to load: ${firstLine(e)}` };
      }
      if (!tf.findBackendFactory(base.tfBackend)) {
        return {
          ...base,
          version,
          state: 'broken',
          reason:
            `${pkg} ${version ?? ''} loaded but registered no "${base.tfBackend}" backend with this package's @tensorflow/tfjs ${tf.version_core}: ` +
            `it uses its own copy of @tensorflow/tfjs-core. Install the same version as @tensorflow/tfjs (npm ls @tensorflow/tfjs-core shows the copies).`,
        };
      }
      return { ...base, version, state: 'usable' };
    })();
    loadResults.set(engineName, p);
  }
  return p;
}

const PROCESS_EVENTS = ['uncaughtException', 'unhandledRejection'] as const;

/**
 * Run `fn` and then remove the process 'uncaughtException' / 'unhandledRejection'
 * listeners added meanwhile. The wasm backend's emscripten glue installs listeners
 * that rethrow from inside itself, so any later uncaught error in the user's program
 * printed ~39 KB of minified glue source and exited with code 7 instead of Node's
 * normal short stack and code 1. (The glue tries to remove them itself, but its
 * filter is wrong.)
 */
async function withoutGlueListeners<R>(fn: () => Promise<R>): Promise<R> {
  // Both events share one listener type for these calls; the cast only picks an overload.
  const listeners = (ev: string) => process.listeners(ev as 'uncaughtException');
  const before = new Map(PROCESS_EVENTS.map((ev) => [ev, new Set(listeners(ev))]));
  try {
    return await fn();
  } finally {
    for (const ev of PROCESS_EVENTS) {
      for (const l of listeners(ev)) if (!before.get(ev)!.has(l)) process.removeListener(ev as 'uncaughtException', l);
    }
  }
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0];
}

/** Parse an engine preference (from an option or {@link TFJS_ENGINE_ENV}); throws naming the accepted values. */
export function parseTfjsEngine(value: string | undefined, where = TFJS_ENGINE_ENV): TfjsEnginePreference {
  if (value === undefined || value === '') return 'auto';
  const v = value.trim().toLowerCase();
  if (v === 'auto' || (TFJS_ENGINES as readonly string[]).includes(v)) return v as TfjsEnginePreference;
  throw new Error(`${where}=${JSON.stringify(value)} is not a tfjs engine; use one of auto, ${TFJS_ENGINES.join(', ')}.`);
}

/** Make `engine` the active tfjs backend, checking `setBackend`'s result. Returns the failure reason, or undefined. */
async function activate(engineName: TfjsEngine): Promise<string | undefined> {
  const status = await loadEngine(engineName);
  if (status.state !== 'usable') return status.reason;
  const name = status.tfBackend;
  let ok: boolean;
  try {
    // Initialising the wasm backend runs the emscripten glue, which adds the listeners.
    ok = await withoutGlueListeners(() => tf.setBackend(name));
  } catch (e) {
    return `tf.setBackend('${name}') threw: ${firstLine(e)}`;
  }
  let reason: string | undefined;
  if (!ok) reason = `tf.setBackend('${name}') resolved false: the ${name} backend failed to initialise (tfjs logs the cause above)`;
  else if (tf.getBackend() !== name) reason = `tf.getBackend() is '${tf.getBackend()}' after tf.setBackend('${name}')`;
  else if (engineName === 'tfjs-node-gpu' && !gpuVisible()) {
    reason = '@tensorflow/tfjs-node-gpu loaded but TensorFlow sees no GPU (CUDA/cuDNN not found); it would run on the CPU';
  }
  if (reason) initFailures.set(engineName, reason);
  else initFailures.delete(engineName);
  return reason;
}

function gpuVisible(): boolean {
  // tfjs-node-gpu falls back to TensorFlow's CPU kernels when CUDA is missing; only its binding knows.
  try {
    const binding = (tf.backend() as unknown as { binding?: { isUsingGpuDevice?: () => boolean } }).binding;
    return binding?.isUsingGpuDevice?.() ?? true;
  } catch {
    return true;
  }
}

let current: TfjsSelection | undefined;

/** The engine chosen by the last {@link selectTfjsBackend}, if any. */
export function activeTfjsSelection(): TfjsSelection | undefined {
  return current && tf.getBackend() === current.tfBackend ? current : undefined;
}

/** Options of {@link selectTfjsBackend}. */
export interface SelectTfjsBackendOptions {
  /** Engine to use; default from {@link TFJS_ENGINE_ENV}, else `auto`. */
  engine?: TfjsEnginePreference;
  /** Environment to read {@link TFJS_ENGINE_ENV} from (default `process.env`). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Called for each engine `auto` passes over (default: `process.emitWarning`). */
  onSkip?: (engine: TfjsEngine, reason: string) => void;
}

/**
 * Make an engine the active tfjs backend. An explicit engine that is absent,
 * broken or fails to initialise throws with the reason (never a silent
 * fallback). `auto` tries tfjs-node-gpu, tfjs-node, wasm, cpu in that order:
 * engines that are not installed are passed over quietly (that is the normal
 * case), engines that are installed but fail are passed over with a warning
 * that names the reason, and falling back to `cpu` always warns.
 */
export async function selectTfjsBackend(options: SelectTfjsBackendOptions = {}): Promise<TfjsSelection> {
  const env = options.env ?? process.env;
  const pref = options.engine ?? parseTfjsEngine(env[TFJS_ENGINE_ENV]);
  const warn = options.onSkip ?? ((e: TfjsEngine, reason: string) => process.emitWarning(`tfjs engine ${e} not used: ${reason}`, 'AccelerateWarning'));
  if (pref !== 'auto') {
    const reason = await activate(pref);
    if (reason) {
      throw new Error(
        `The tfjs engine "${pref}" was requested (${options.engine ? 'engine option' : TFJS_ENGINE_ENV}) but cannot be used: ${reason}. ` +
          `Fix it, or ask for another engine (${TFJS_ENGINES.join(', ')}) or "auto".`,
      );
    }
    current = { engine: pref, tfBackend: TF_BACKEND[pref], skipped: [] };
    return current;
  }
  const skipped: TfjsSelection['skipped'] = [];
  for (const e of TFJS_ENGINES) {
    if (e === 'cpu' && skipped.length > 0) {
      warn('wasm', `falling back to the pure-JavaScript cpu engine (about 30x slower than wasm) because: ${skipped.map((s) => `${s.engine}: ${s.reason}`).join('; ')}`);
    }
    const status = await loadEngine(e);
    if (status.state === 'absent') continue;
    const reason = await activate(e);
    if (!reason) {
      current = { engine: e, tfBackend: TF_BACKEND[e], skipped };
      return current;
    }
    skipped.push({ engine: e, reason });
    if (e !== 'cpu') warn(e, reason);
  }
  throw new Error(`No tfjs engine could be initialised: ${skipped.map((s) => `${s.engine}: ${s.reason}`).join('; ')}`);
}

/** What `accelerate env` shows about tfjs: every engine's state and the active one. */
export interface TfjsBackendsReport {
  /** `@tensorflow/tfjs` version. */
  tfjsVersion: string;
  /** The active engine, when one was selected. */
  active?: TfjsEngine;
  engines: TfjsEngineStatus[];
}

/**
 * Report every engine's state for `accelerate env`. Loads the installed
 * packages (which registers their tfjs backends) but does not change the
 * active backend.
 */
export async function describeTfjsBackends(): Promise<TfjsBackendsReport> {
  const engines: TfjsEngineStatus[] = [];
  for (const e of TFJS_ENGINES) {
    const s = await loadEngine(e);
    const failed = initFailures.get(e);
    engines.push(s.state === 'usable' && failed ? { ...s, state: 'broken', reason: failed } : s);
  }
  return { tfjsVersion: tf.version.tfjs ?? tf.version_core, active: activeTfjsSelection()?.engine, engines };
}

/** One line per engine, for terminals. */
export function formatTfjsBackends(report: TfjsBackendsReport): string {
  const lines = [`@tensorflow/tfjs ${report.tfjsVersion}; active engine: ${report.active ?? 'none selected yet'}`];
  for (const s of report.engines) {
    lines.push(`  ${s.engine.padEnd(14)} ${s.state.padEnd(7)} ${s.package}${s.version ? `@${s.version}` : ''}${s.reason ? ` — ${s.reason}` : ''}`);
  }
  return lines.join('\n');
}
