/**
 * The collective timeout set without code: `accelerate launch --timeout <seconds>` or the
 * environment variable {@link PROCESS_GROUP_TIMEOUT_ENV}. `InitProcessGroupKwargs` in code
 * wins over both.
 * @module
 */

/** Seconds a collective (and the rendezvous) may wait: `ACCELERATE_PROCESS_GROUP_TIMEOUT=600`. */
export const PROCESS_GROUP_TIMEOUT_ENV = 'ACCELERATE_PROCESS_GROUP_TIMEOUT';

/** A positive, finite number of seconds from its text (`"600"`, `"0.5"`, `"1e3"`), else undefined. */
export function parseTimeoutSeconds(raw: string): number | undefined {
  const t = raw.trim();
  if (!/^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(t)) return undefined;
  const n = Number(t);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}
