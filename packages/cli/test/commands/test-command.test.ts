import { describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testLaunchArgs, testScriptPath } from '../../src/commands/test.js';
import { createProgram } from '../../src/program.js';
import type { CliContext } from '../../src/context.js';

// A HOME without a default config file, so the defaults apply.
const env = { HF_HOME: mkdtempSync(join(tmpdir(), 'acc-test-cmd-')) };

describe('accelerate test launch arguments', () => {
  it('default: 2 CPU processes; --num_processes overrides it and beats a config file', () => {
    const script = testScriptPath();
    expect(testLaunchArgs({ env })).toEqual({ cpu: true, numProcesses: 2, numMachines: 1, mixedPrecision: 'no', script });
    expect(testLaunchArgs({ env }, undefined, 3)).toEqual({ cpu: true, numProcesses: 3, numMachines: 1, mixedPrecision: 'no', script });
    expect(testLaunchArgs({ env }, '/tmp/c.yaml', 4)).toEqual({ configFile: '/tmp/c.yaml', script, numProcesses: 4 });
    expect(testLaunchArgs({ env }, '/tmp/c.yaml')).toEqual({ configFile: '/tmp/c.yaml', script });
  });

  it('rejects a --num_processes that is not a whole number >= 1, naming the flag and the value', async () => {
    const errors: string[] = [];
    const ctx = { env, stdout: () => {}, stderr: (t: string) => errors.push(t) } as unknown as CliContext;
    const program = createProgram(ctx);
    program.exitOverride();
    program.configureOutput({ writeErr: (t) => errors.push(t), writeOut: () => {} });
    for (const cmd of program.commands) cmd.exitOverride().configureOutput({ writeErr: (t) => errors.push(t), writeOut: () => {} });
    await expect(program.parseAsync(['node', 'accelerate', 'test', '--num_processes', '0'])).rejects.toThrow();
    expect(errors.join('')).toContain('--num_processes must be a whole number >= 1, got "0".');
  });
});
