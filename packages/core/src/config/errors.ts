/**
 * The configuration error type and the "did you mean" helper it uses.
 * @module
 */

/** What went wrong with one key. */
export type ConfigIssueKind =
  | 'unknown-key'
  | 'missing-key'
  | 'invalid-type'
  | 'invalid-value'
  | 'parse-error'
  | 'file-not-found';

/** One problem found in a configuration source. */
export interface ConfigIssue {
  readonly kind: ConfigIssueKind;
  /** Dotted key (`fsdp_config.fsdp_sharding_strategy`), env var name, or argument name. */
  readonly key: string;
  /** The offending value, when there is one. */
  readonly value?: unknown;
  /** What would have been accepted, in words. */
  readonly expected?: string;
  /** The nearest valid key or value, when one is close. */
  readonly suggestion?: string;
  /** The full sentence (without the source prefix). */
  readonly message: string;
}

/**
 * A configuration value was rejected. `source` names where it came from
 * (`config file /path/default_config.yaml`, `environment`, `constructor`),
 * `issues` lists every problem found, and `message` repeats them all so a
 * user can fix the file in one go.
 */
export class ConfigError extends Error {
  readonly source: string;
  readonly issues: readonly ConfigIssue[];

  constructor(source: string, issues: readonly ConfigIssue[]) {
    const head = `Invalid Accelerate configuration in ${source}`;
    const message =
      issues.length === 1
        ? `${head}: ${issues[0].message}`
        : `${head} (${issues.length} problems):\n${issues.map((i) => `  - ${i.message}`).join('\n')}`;
    super(message);
    this.name = 'ConfigError';
    this.source = source;
    this.issues = issues;
  }
}

/** Edit distance (insertions, deletions, substitutions) between two strings. */
export function levenshtein(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  let cur = new Array<number>(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1;
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[b.length];
}

/**
 * The candidate nearest to `name` (case-insensitive edit distance), if it is
 * close enough to be a plausible typo: at most max(2, ⌊len/3⌋) edits.
 * Ties go to the earlier candidate.
 */
export function suggestClosest(name: string, candidates: Iterable<string>): string | undefined {
  const lower = name.toLowerCase();
  const limit = Math.max(2, Math.floor(name.length / 3));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = levenshtein(lower, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= limit ? best : undefined;
}

/** A value as shown in error messages: strings quoted, the rest as YAML/JSON would show them. */
export function showValue(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
