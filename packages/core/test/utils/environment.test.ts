import { describe, expect, it } from 'vitest';
import {
  checkOsKernel,
  clearEnvironment,
  getIntFromEnv,
  parseFlagFromEnv,
  patchEnvironment,
  purgeAccelerateEnvironment,
} from '../../src/utils/environment.js';

describe('patchEnvironment', () => {
  it('[B55] sets upper-cased keys with string values and removes them afterwards', () => {
    delete process.env.AA;
    delete process.env.BB;
    const seen = patchEnvironment({ aa: 1, BB: 2 }, () => [process.env.AA, process.env.BB]);
    expect(seen).toEqual(['1', '2']);
    expect('AA' in process.env).toBe(false);
    expect('BB' in process.env).toBe(false);
  });

  it('[B55] nested patches restore the outer values', () => {
    patchEnvironment({ aa: 1, BB: 2 }, () => {
      patchEnvironment({ Aa: 10, bb: '20', cC: 30 }, () => {
        expect([process.env.AA, process.env.BB, process.env.CC]).toEqual(['10', '20', '30']);
      });
      expect([process.env.AA, process.env.BB]).toEqual(['1', '2']);
      expect('CC' in process.env).toBe(false);
    });
    expect('AA' in process.env || 'BB' in process.env || 'CC' in process.env).toBe(false);
  });

  it('[B55] restores a pre-existing value when the block throws', () => {
    process.env.ACCEL_TS_PATCH_TEST = 'orig';
    try {
      expect(() =>
        patchEnvironment({ ACCEL_TS_PATCH_TEST: 'orig_foofoofoo' }, () => {
          expect(process.env.ACCEL_TS_PATCH_TEST).toBe('orig_foofoofoo');
          throw new Error('Oopsy daisy!');
        }),
      ).toThrow('Oopsy daisy!');
      expect(process.env.ACCEL_TS_PATCH_TEST).toBe('orig');
    } finally {
      delete process.env.ACCEL_TS_PATCH_TEST;
    }
  });

  it('[B55] async blocks keep the patch until they settle, also on rejection', async () => {
    const inside = await patchEnvironment({ ACCEL_TS_ASYNC: 'x' }, async () => {
      await new Promise((r) => setTimeout(r, 5));
      return process.env.ACCEL_TS_ASYNC;
    });
    expect(inside).toBe('x');
    expect('ACCEL_TS_ASYNC' in process.env).toBe(false);
    await expect(
      patchEnvironment({ ACCEL_TS_ASYNC: 'y' }, async () => {
        await Promise.resolve();
        throw new Error('late');
      }),
    ).rejects.toThrow('late');
    expect('ACCEL_TS_ASYNC' in process.env).toBe(false);
  });
});

describe('clearEnvironment / purgeAccelerateEnvironment', () => {
  it('clears the environment inside and restores it exactly, even on error', () => {
    const before = { ...process.env };
    const key = Object.keys(before)[0];
    expect(() =>
      clearEnvironment(() => {
        expect(Object.keys(process.env)).toEqual([]);
        process.env.ADDED_INSIDE = '1';
        throw new Error('Oopsy daisy!');
      }),
    ).toThrow('Oopsy daisy!');
    expect(process.env[key]).toBe(before[key]);
    expect('ADDED_INSIDE' in process.env).toBe(false);
    expect({ ...process.env }).toEqual(before);
  });

  it('purgeAccelerateEnvironment restores ACCELERATE_* variables and drops new ones', () => {
    process.env.ACCELERATE_TS_KEEP = 'a';
    try {
      purgeAccelerateEnvironment(() => {
        process.env.ACCELERATE_TS_KEEP = 'changed';
        process.env.ACCELERATE_TS_NEW = 'x';
      });
      expect(process.env.ACCELERATE_TS_KEEP).toBe('a');
      expect('ACCELERATE_TS_NEW' in process.env).toBe(false);
    } finally {
      delete process.env.ACCELERATE_TS_KEEP;
    }
  });
});

describe('checkOsKernel', () => {
  it('[B55] no warning on Linux 5.15.0 or on Darwin 5.4.0', () => {
    expect(checkOsKernel('Linux', '5.15.0-35-generic')).toBeNull();
    expect(checkOsKernel('linux', '5.15.0-35-generic')).toBeNull();
    expect(checkOsKernel('Darwin', '5.4.0-35-generic')).toBeNull();
    expect(checkOsKernel('darwin', '5.4.0-35-generic')).toBeNull();
  });

  it('[B55] warns on Linux 5.4.0, naming the found and the minimum version', () => {
    const warning = checkOsKernel('linux', '5.4.0-35-generic');
    expect(warning).not.toBeNull();
    expect(warning).toContain('5.4.0');
    expect(warning).toContain('5.5.0');
    expect(checkOsKernel('Linux', '4.19.112+')).toContain('4.19.112');
    expect(checkOsKernel('Linux', '5.5.0')).toBeNull();
    expect(checkOsKernel('Linux', 'unknown')).toBeNull();
  });
});

describe('env flag parsing (through config/bool.ts)', () => {
  it('accepts the truthy and falsy spellings in any case', () => {
    for (const v of ['yes', 'TRUE', 't', 'Y', '1', 'on']) patchEnvironment({ ACCEL_TS_FLAG: v }, () => expect(parseFlagFromEnv('ACCEL_TS_FLAG'), v).toBe(true));
    for (const v of ['no', 'False', 'f', 'N', '0', 'OFF']) patchEnvironment({ ACCEL_TS_FLAG: v }, () => expect(parseFlagFromEnv('ACCEL_TS_FLAG', true), v).toBe(false));
  });

  it('parseFlagFromEnv and getIntFromEnv read the environment', () => {
    patchEnvironment({ ACCEL_TS_FLAG: 'on', ACCEL_TS_BAD: 'sure', ACCEL_TS_INT: '7', ACCEL_TS_NEG: '-1' }, () => {
      expect(parseFlagFromEnv('ACCEL_TS_FLAG')).toBe(true);
      expect(parseFlagFromEnv('ACCEL_TS_MISSING', true)).toBe(true);
      expect(() => parseFlagFromEnv('ACCEL_TS_BAD')).toThrow(/ACCEL_TS_BAD="sure" is not a boolean: one of y, yes, t, true, on, 1/);
      expect(getIntFromEnv(['ACCEL_TS_NEG', 'ACCEL_TS_INT'], 3)).toBe(7);
      expect(getIntFromEnv(['ACCEL_TS_MISSING'], 3)).toBe(3);
    });
  });
});
