// The collective timeout without code: `accelerate launch --timeout <seconds>` and
// ACCELERATE_PROCESS_GROUP_TIMEOUT, checked before spawning, exported to the ranks with
// provenance, resolved like the other settings.
import { describe, it, expect } from 'vitest';
import { launchArgsFromFlags, resolveLaunchArgs } from '../../src/launch/args.js';
import { LaunchError, parseLaunchFlagValue, launchFlag } from '../../src/launch/flags.js';
import { buildLaunchPlan } from '../../src/launch/plan.js';
import { resolveConfig } from '../../src/config/resolve.js';
import { InitProcessGroupKwargs } from '../../src/accelerator/kwargs-handlers.js';

const resolve = (flags: Record<string, number | string | undefined>, env: Record<string, string> = {}) =>
  resolveLaunchArgs(launchArgsFromFlags(flags, 'train.ts'), { configFile: null, env });

describe('--timeout and ACCELERATE_PROCESS_GROUP_TIMEOUT', () => {
  it('the flag exists in the launch table, in seconds', () => {
    expect(launchFlag('timeout')).toMatchObject({ type: 'number', group: 'distributed', support: 'native' });
    expect(parseLaunchFlagValue(launchFlag('timeout')!, '90')).toBe(90);
    // The example in the message is a sensible timeout, not 1 second.
    expect(() => parseLaunchFlagValue(launchFlag('timeout')!, 'abc')).toThrow(/--timeout got "abc", which is not a number; pass e\.g\. --timeout 600\./);
  });

  it('bad values are refused before spawning, naming the flag or variable, the value and the fix', () => {
    expect(() => resolve({ timeout: 0 })).toThrow(LaunchError);
    expect(() => resolve({ timeout: 0 })).toThrow(/--timeout is 0; pass a positive number of seconds, e\.g\. --timeout 600/);
    expect(() => resolve({}, { ACCELERATE_PROCESS_GROUP_TIMEOUT: 'ten' })).toThrow(
      /ACCELERATE_PROCESS_GROUP_TIMEOUT="ten" is not a positive number of seconds\. Set it to e\.g\. 600/,
    );
    expect(() => resolve({}, { ACCELERATE_PROCESS_GROUP_TIMEOUT: '-3' })).toThrow(/ACCELERATE_PROCESS_GROUP_TIMEOUT="-3"/);
  });

  it('the flag is exported to every rank with its provenance; the launcher env value passes through; absent = unset', () => {
    const p = buildLaunchPlan(resolve({ timeout: 90, num_processes: 2 }), { env: {}, cpuCount: 2 });
    expect(p.ranks[1]!.env.ACCELERATE_PROCESS_GROUP_TIMEOUT).toBe('90');
    const rankEnv = p.ranks[1]!.env as Record<string, string>;
    const inRank = resolveConfig({ env: rankEnv, configFile: false });
    expect(inRank.processGroupTimeout).toMatchObject({ value: 90, source: 'launch flag', detail: '--timeout (via ACCELERATE_PROCESS_GROUP_TIMEOUT)' });

    const fromEnv = resolve({ num_processes: 2 }, { ACCELERATE_PROCESS_GROUP_TIMEOUT: '45' });
    expect(fromEnv.processGroupTimeout).toBe(45);
    // The flag wins over the launcher's environment.
    expect(resolve({ timeout: 7 }, { ACCELERATE_PROCESS_GROUP_TIMEOUT: '45' }).processGroupTimeout).toBe(7);
    const none = buildLaunchPlan(resolve({ num_processes: 2 }), { env: {}, cpuCount: 2 });
    expect(none.ranks[0]!.env.ACCELERATE_PROCESS_GROUP_TIMEOUT).toBeUndefined();
  });

  it('resolveConfig reads the variable with provenance; default undefined (InitProcessGroupKwargs decides)', () => {
    expect(resolveConfig({ env: {}, configFile: false }).processGroupTimeout).toMatchObject({ value: undefined, source: 'default' });
    expect(resolveConfig({ env: { ACCELERATE_PROCESS_GROUP_TIMEOUT: '120' }, configFile: false }).processGroupTimeout).toMatchObject({
      value: 120,
      source: 'env',
      detail: 'ACCELERATE_PROCESS_GROUP_TIMEOUT',
    });
    expect(() => resolveConfig({ env: { ACCELERATE_PROCESS_GROUP_TIMEOUT: '0' }, configFile: false })).toThrow(/ACCELERATE_PROCESS_GROUP_TIMEOUT/);
    expect(new InitProcessGroupKwargs().timeoutMs(undefined)).toBe(1_800_000);
  });
});
