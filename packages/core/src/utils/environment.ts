/**
 * Environment helpers: env flags (booleans parsed by `config/bool.ts`), temporarily patched
 * or cleared `process.env`, and the Linux kernel check Accelerate runs when
 * an Accelerator is created.
 * @module
 */
import os from 'node:os';
import { parseBoolEnv } from '../config/bool.js';

/**
 * The boolean value of env `key` (Accelerate's `parse_flag_from_env`, through
 * {@link parseBoolEnv}: `y yes t true on 1` / `n no f false off 0`, any case),
 * or `defaultValue` when it is unset or empty.
 * @throws ConfigError when the variable holds something else, naming the variable and the spellings.
 */
export function parseFlagFromEnv(key: string, defaultValue = false): boolean {
  const raw = process.env[key];
  if (raw === undefined || raw === '') return defaultValue;
  return parseBoolEnv(key, raw);
}

/** The first of `keys` set in the env to a non-negative integer, else `defaultValue`. */
export function getIntFromEnv(keys: readonly string[], defaultValue: number): number {
  for (const key of keys) {
    const raw = process.env[key];
    if (raw === undefined || raw.trim() === '') continue;
    const value = Number(raw);
    if (!Number.isInteger(value)) {
      throw new RangeError(`environment variable ${key}=${JSON.stringify(raw)} is not an integer; set it to a whole number or unset it.`);
    }
    if (value >= 0) return value;
  }
  return defaultValue;
}

function isPromiseLike(x: unknown): x is PromiseLike<unknown> {
  return typeof x === 'object' && x !== null && typeof (x as { then?: unknown }).then === 'function';
}

/** Run `fn`, then `restore` once it finished — after the promise settles when `fn` is async. */
export function runThenRestore<R>(fn: () => R, restore: () => void): R {
  let result: R;
  try {
    result = fn();
  } catch (e) {
    restore();
    throw e;
  }
  if (isPromiseLike(result)) {
    return Promise.resolve(result).finally(restore) as R;
  }
  restore();
  return result;
}

/**
 * Run `fn` with the variables of `vars` set in `process.env` (keys
 * upper-cased, values turned into strings), then restore each variable to its
 * previous value, or remove it, even when `fn` throws or rejects. `fn` may be
 * async; `process.env` is global, so other code running meanwhile sees the
 * patch too.
 *
 * @example
 * patchEnvironment({ aa: 1, BB: 2 }, () => process.env.AA) // "1"
 */
export function patchEnvironment<R>(vars: Record<string, unknown>, fn: () => R): R {
  const saved = new Map<string, string | undefined>();
  for (const [rawKey, value] of Object.entries(vars)) {
    const key = rawKey.toUpperCase();
    if (!saved.has(key)) saved.set(key, process.env[key]);
    process.env[key] = String(value);
  }
  return runThenRestore(fn, () => {
    for (const [key, previous] of saved) {
      if (previous === undefined) delete process.env[key];
      else process.env[key] = previous;
    }
  });
}

/**
 * Run `fn` with an empty `process.env`, then put back exactly the previous
 * environment (variables `fn` added are removed), even on error.
 */
export function clearEnvironment<R>(fn: () => R): R {
  const saved = { ...process.env };
  const wipe = () => {
    for (const key of Object.keys(process.env)) delete process.env[key];
  };
  wipe();
  return runThenRestore(fn, () => {
    wipe();
    Object.assign(process.env, saved);
  });
}

/**
 * Run `fn`, then restore every `ACCELERATE_*` variable to what it was before
 * (removing the ones `fn` added). Useful in tests, where code under test may
 * set such variables.
 */
export function purgeAccelerateEnvironment<R>(fn: () => R): R {
  const prefix = 'ACCELERATE_';
  const saved = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith(prefix)));
  return runThenRestore(fn, () => {
    for (const key of Object.keys(process.env)) {
      if (key.startsWith(prefix) && !(key in saved)) delete process.env[key];
    }
    Object.assign(process.env, saved);
  });
}

/** Oldest Linux kernel Accelerate recommends (older ones can hang distributed runs). */
export const MIN_KERNEL_VERSION = '5.5.0';

/**
 * The warning Accelerate gives when the Linux kernel is older than
 * {@link MIN_KERNEL_VERSION}, or null (not Linux, recent enough, or a
 * release string without an `x.y.z` version). Pure: pass the platform and
 * release to test it; defaults are this machine's (`os.platform()`, `os.release()`).
 */
export function checkOsKernel(platform: string = os.platform(), release: string = os.release()): string | null {
  if (platform.toLowerCase() !== 'linux') return null;
  const match = /(\d+)\.(\d+)\.(\d+)/.exec(release);
  if (!match) return null;
  const version = [Number(match[1]), Number(match[2]), Number(match[3])];
  const min = MIN_KERNEL_VERSION.split('.').map(Number);
  let older = false;
  for (let i = 0; i < 3; i++) {
    if (version[i] !== min[i]) {
      older = version[i] < min[i];
      break;
    }
  }
  if (!older) return null;
  const found = match.slice(1, 4).join('.');
  return (
    `Linux kernel ${found} is older than ${MIN_KERNEL_VERSION}, the minimum recommended for distributed runs: ` +
    `processes may hang. Upgrade the kernel to ${MIN_KERNEL_VERSION} or newer.`
  );
}
