/**
 * Misspelt Accelerator options are errors, as Python's `TypeError: unexpected
 * keyword argument` is: a silently ignored `mixed_precision` or
 * `gradientAcumulationSteps` would run a different training than intended.
 * @module
 */
import { suggestClosest } from '../config/errors.js';
import type { GradientAccumulationOptions } from '../state/gradient-state.js';
import type { DataLoaderConfiguration, ProjectConfiguration } from './configurations.js';

// Records keyed by every option: the compiler fails here when an option is added to an interface but not to its list.
const DATALOADER_CONFIG: Record<keyof DataLoaderConfiguration, true> = {
  splitBatches: true,
  dispatchBatches: true,
  evenBatches: true,
  useSeedableSampler: true,
  dataSeed: true,
  nonBlocking: true,
};
const PROJECT_CONFIG: Record<keyof ProjectConfiguration, true> = {
  projectDir: true,
  loggingDir: true,
  automaticCheckpointNaming: true,
  totalLimit: true,
  iteration: true,
  saveOnEachNode: true,
};
const GRADIENT_ACCUMULATION: Record<keyof GradientAccumulationOptions, true> = {
  numSteps: true,
  adjustScheduler: true,
  syncWithDataloader: true,
  syncEachBatch: true,
};

/** Nested plain option objects that are checked too, by option name. */
const NESTED: Record<string, Record<string, true>> = {
  dataloaderConfig: DATALOADER_CONFIG,
  projectConfig: PROJECT_CONFIG,
  gradientAccumulationPlugin: GRADIENT_ACCUMULATION,
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** One sentence naming the unknown keys of `obj` with their nearest valid names, or undefined. */
function unknownKeys(obj: Record<string, unknown>, valid: readonly string[], prefix: string): string | undefined {
  const found: string[] = [];
  for (const key of Object.keys(obj)) {
    if (valid.includes(key)) continue;
    const near = suggestClosest(key, valid);
    found.push(`"${prefix}${key}"${near ? ` (did you mean "${prefix}${near}"?)` : ''}`);
  }
  if (found.length === 0) return undefined;
  const what = prefix ? `${prefix.slice(0, -1)} options` : 'options';
  return `unknown option${found.length > 1 ? 's' : ''} ${found.join(', ')}; valid ${what}: ${valid.join(', ')}`;
}

/**
 * Throws a TypeError naming every unknown key of `options` (and of its plain
 * nested option objects: `dataloaderConfig`, `projectConfig`,
 * `gradientAccumulationPlugin`) with the nearest valid name.
 *
 * @param options - what the caller passed.
 * @param valid - the option names `where` accepts.
 * @param where - named in the message, e.g. `new Accelerator()`.
 */
export function checkOptionNames(options: object, valid: readonly string[], where: string): void {
  if (!isPlainObject(options)) return;
  const problems: string[] = [];
  const top = unknownKeys(options, valid, '');
  if (top) problems.push(top);
  for (const [name, keys] of Object.entries(NESTED)) {
    const nested = options[name];
    if (!valid.includes(name) || !isPlainObject(nested)) continue;
    const inner = unknownKeys(nested, Object.keys(keys), `${name}.`);
    if (inner) problems.push(inner);
  }
  if (problems.length === 0) return;
  throw new TypeError(`${where}: ${problems.join('. ')}. Unknown options would be silently ignored; fix the name.`);
}
