/**
 * Registry of compute backends by name and priority.
 *
 * Backend packages register a {@link BackendFactory}; core resolves the best
 * one that actually initialises on this machine. Each factory's `init()` runs
 * at most once (its promise is shared by concurrent callers) and a failure is
 * remembered with its error, so `accelerate env` can say why a backend is not
 * usable and a failed native load is not retried on every call. When nothing
 * initialises, one error lists every candidate and the reason it failed.
 * (Same design as onnxruntime-common's backend registry.)
 * @module
 */
import type { Backend, BackendFactory } from '../interfaces/backend.js';

/** Lifecycle of a registered backend. */
export type BackendState = 'registered' | 'initializing' | 'ready' | 'failed';

/** One row of {@link listBackends}: what `accelerate env` prints. */
export interface BackendInfo {
  name: string;
  priority: number;
  /** `registered`: init() not called yet; `initializing`: in flight; `ready`: usable; `failed`: see `reason`. */
  state: BackendState;
  /** Why init() failed (the error's message), for `failed` backends. */
  reason?: string;
  /** The error init() threw, for `failed` backends. */
  error?: unknown;
  /** The backend's `version`, once `ready`. */
  version?: string;
}

/** One candidate that could not be used, as listed by {@link NoAvailableBackendError}. */
export interface BackendFailure {
  name: string;
  error: unknown;
}

/** Thrown by {@link resolveBackend} when no candidate backend initialises. `failures` says why each one failed. */
export class NoAvailableBackendError extends Error {
  override readonly name = 'NoAvailableBackendError';

  constructor(
    readonly failures: readonly BackendFailure[],
    hint = '',
  ) {
    const list = failures.map((f) => `[${f.name}] ${formatError(f.error)}`).join(', ');
    super(`no available backend found. ERR: ${list}${hint}`);
  }
}

function formatError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

interface Entry {
  readonly name: string;
  readonly factory: BackendFactory;
  priority: number;
  /** Registration order, breaks priority ties (earlier first). */
  readonly order: number;
  promise?: Promise<Backend>;
  backend?: Backend;
  failed?: { error: unknown };
}

const NO_BACKEND_HINT =
  ' Install a backend package (e.g. `npm install @accelerate/backend-libtorch`) and it is found automatically; or register one yourself with `registerBackend("libtorch", libtorch())`, or pass `new Accelerator({ backend: libtorch() })`.';

/**
 * A set of named backend factories. Most code uses the process-wide default
 * through {@link registerBackend}/{@link resolveBackend}; tests create their
 * own instances to stay isolated.
 */
export class BackendRegistry {
  private readonly entries = new Map<string, Entry>();
  private counter = 0;

  /**
   * Register `factory` under `name`. Higher `priority` is tried first when
   * resolving without hints; ties go to the earlier registration.
   *
   * Registering the same factory again only updates its priority (and keeps
   * its memoised init). Registering a *different* factory under a taken
   * name replaces the old one only when `priority` is greater than or equal
   * to the existing priority (the replacement starts uninitialised); a lower
   * priority leaves the existing registration in place.
   * @returns whether `factory` is now the one registered under `name`.
   */
  register(name: string, factory: BackendFactory, priority = 0): boolean {
    if (typeof name !== 'string' || name.trim() === '') {
      throw new TypeError(`registerBackend: name must be a non-empty string, got ${JSON.stringify(name)}.`);
    }
    if (!factory || typeof factory.init !== 'function') {
      throw new TypeError(
        `registerBackend("${name}"): expected a BackendFactory with an init() method returning a Promise<Backend>, got ${describe(factory)}.`,
      );
    }
    if (typeof priority !== 'number' || !Number.isFinite(priority)) {
      throw new TypeError(`registerBackend("${name}"): priority must be a finite number, got ${String(priority)}.`);
    }
    const existing = this.entries.get(name);
    if (existing) {
      if (existing.factory === factory) {
        existing.priority = priority;
        return true;
      }
      if (priority < existing.priority) return false;
    }
    this.entries.set(name, { name, factory, priority, order: this.counter++ });
    return true;
  }

  /** Remove `name` (mainly for tests). Returns whether it was registered. */
  unregister(name: string): boolean {
    return this.entries.delete(name);
  }

  /** Names in resolution order: descending priority, then registration order. */
  names(): string[] {
    return this.sorted().map((e) => e.name);
  }

  private sorted(): Entry[] {
    return [...this.entries.values()].sort((a, b) => b.priority - a.priority || a.order - b.order);
  }

  /**
   * The first backend that initialises: among `hints` in the given order, or
   * else among all registered backends by priority. Failures are remembered
   * and not retried. Throws a {@link NoAvailableBackendError} listing every
   * candidate and its error when none works.
   */
  async resolve(hints?: readonly string[]): Promise<Backend> {
    const candidates = hints && hints.length > 0 ? [...hints] : this.names();
    if (candidates.length === 0) {
      throw new NoAvailableBackendError([], `no backend is registered.${NO_BACKEND_HINT}`);
    }
    const failures: BackendFailure[] = [];
    for (const name of candidates) {
      const entry = this.entries.get(name);
      if (!entry) {
        const known = this.names();
        failures.push({
          name,
          error: `not registered (registered: ${known.length > 0 ? known.join(', ') : 'none'})`,
        });
        continue;
      }
      try {
        return await this.init(entry);
      } catch (error) {
        failures.push({ name, error });
      }
    }
    throw new NoAvailableBackendError(failures);
  }

  private init(entry: Entry): Promise<Backend> {
    if (!entry.promise) {
      // Wrap so that a synchronous throw in init() becomes a remembered failure too.
      entry.promise = Promise.resolve()
        .then(() => entry.factory.init())
        .then(
          (backend) => {
            if (!backend || typeof backend !== 'object' || typeof (backend as Backend).name !== 'string') {
              throw new TypeError(`init() of backend "${entry.name}" did not return a Backend object (got ${describe(backend)}).`);
            }
            entry.backend = backend;
            return backend;
          },
        )
        .catch((error: unknown) => {
          entry.failed = { error };
          throw error;
        });
      // The rejection is observed by resolve(); keep Node from reporting it again if nobody else awaits.
      entry.promise.catch(() => {});
    }
    return entry.promise;
  }

  /** The backends whose `init()` has succeeded, in resolution order (what `setSeed` seeds). */
  initialized(): Backend[] {
    return this.sorted().flatMap((e) => (e.backend && !e.failed ? [e.backend] : []));
  }

  /** Every registered backend in resolution order, with its state (for `accelerate env`). */
  list(): BackendInfo[] {
    return this.sorted().map((e) => {
      const info: BackendInfo = { name: e.name, priority: e.priority, state: 'registered' };
      if (e.failed) {
        info.state = 'failed';
        info.error = e.failed.error;
        info.reason = e.failed.error instanceof Error ? e.failed.error.message : String(e.failed.error);
      } else if (e.backend) {
        info.state = 'ready';
        info.version = e.backend.version;
      } else if (e.promise) {
        info.state = 'initializing';
      }
      return info;
    });
  }
}

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (x === undefined) return 'undefined';
  if (typeof x === 'object') return x.constructor?.name ?? 'object';
  return typeof x;
}

/** The process-wide registry used by the functions below. */
export const defaultBackendRegistry = new BackendRegistry();

/** Register a backend factory in the default registry. See {@link BackendRegistry.register} for the replacement rule. */
export function registerBackend(name: string, factory: BackendFactory, priority = 0): boolean {
  return defaultBackendRegistry.register(name, factory, priority);
}

/** Resolve a backend from the default registry. See {@link BackendRegistry.resolve}. */
export function resolveBackend(hints?: readonly string[]): Promise<Backend> {
  return defaultBackendRegistry.resolve(hints);
}

/** Registered backends of the default registry with their state. */
export function listBackends(): BackendInfo[] {
  return defaultBackendRegistry.list();
}

/** Remove a backend from the default registry (mainly for tests). */
export function unregisterBackend(name: string): boolean {
  return defaultBackendRegistry.unregister(name);
}
