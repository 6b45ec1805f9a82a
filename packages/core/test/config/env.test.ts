import { describe, expect, it } from 'vitest';
import { checkAccelerateEnvNames, KNOWN_ACCELERATE_ENV_VARS, parseBoolEnv } from '../../src/config/env.js';
import { ConfigError } from '../../src/config/errors.js';
import { levenshtein, suggestClosest } from '../../src/config/errors.js';

describe('parseBoolEnv (Accelerate str_to_bool)', () => {
  it('accepts the same spellings as Python, in any case', () => {
    for (const t of ['y', 'yes', 't', 'true', 'on', '1', 'TRUE', 'Yes', 'True']) expect(parseBoolEnv('X', t), t).toBe(true);
    for (const f of ['n', 'no', 'f', 'false', 'off', '0', 'FALSE', 'No', 'False']) expect(parseBoolEnv('X', f), f).toBe(false);
  });
  it('rejects anything else, naming the variable and the value', () => {
    let err: unknown;
    try {
      parseBoolEnv('ACCELERATE_USE_CPU', 'maybe');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toBe(
      'Invalid Accelerate configuration in the environment: ACCELERATE_USE_CPU="maybe" is not a boolean: one of y, yes, t, true, on, 1 (true) or n, no, f, false, off, 0 (false)',
    );
  });
});

describe('misspelt ACCELERATE_* variables', () => {
  it('warns with the nearest known name', () => {
    expect(checkAccelerateEnvNames({ ACCELERATE_MIXED_PRECISON: 'fp16', ACCELERATE_USE_CPUU: '1' })).toEqual([
      'ACCELERATE_MIXED_PRECISON is not an Accelerate variable and is ignored; did you mean ACCELERATE_MIXED_PRECISION?',
      'ACCELERATE_USE_CPUU is not an Accelerate variable and is ignored; did you mean ACCELERATE_USE_CPU?',
    ]);
  });
  it('is quiet for known names, unrelated names, and names nothing is close to', () => {
    const env = Object.fromEntries(KNOWN_ACCELERATE_ENV_VARS.map((k) => [k, '1']));
    expect(checkAccelerateEnvNames({ ...env, PATH: '/bin', ACCELERATE_SOMETHING_ELSE_ENTIRELY: 'x' })).toEqual([]);
  });
  it('accepts extra known names', () => {
    expect(checkAccelerateEnvNames({ ACCELERATE_USE_CPUS: '1' })).toEqual([
      'ACCELERATE_USE_CPUS is not an Accelerate variable and is ignored; did you mean ACCELERATE_USE_CPU?',
    ]);
    expect(checkAccelerateEnvNames({ ACCELERATE_USE_CPUS: '1' }, ['ACCELERATE_USE_CPUS'])).toEqual([]);
  });
});

describe('suggestClosest', () => {
  it('edit distance', () => {
    expect(levenshtein('kitten', 'sitting')).toBe(3);
    expect(levenshtein('', 'abc')).toBe(3);
    expect(levenshtein('same', 'same')).toBe(0);
  });
  it('returns the nearest candidate only when it is plausibly a typo', () => {
    expect(suggestClosest('mixed_precison', ['mixed_precision', 'use_cpu'])).toBe('mixed_precision');
    expect(suggestClosest('MIXED_PRECISION', ['mixed_precision'])).toBe('mixed_precision');
    expect(suggestClosest('zzz', ['mixed_precision', 'use_cpu'])).toBeUndefined();
  });
});
