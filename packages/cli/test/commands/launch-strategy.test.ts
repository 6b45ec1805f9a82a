// `accelerate launch` asking for FSDP / DeepSpeed / Megatron-LM (flag or config
// file) checks, before any process starts, that a package providing that
// strategy is installed, and names the one to install when none is.
import { describe, it, expect } from 'vitest';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchArgsFromFlags, resolveLaunchArgs } from '@accelerate/core/internal';
import { runCli } from '../../src/program.js';
import { checkStrategyPackage } from '../../src/commands/launch.js';
import type { CliContext } from '../../src/context.js';

const echo = join(import.meta.dirname, '..', 'fixtures', 'echo-rank.mjs');
const baseEnv: Record<string, string | undefined> = { PATH: process.env.PATH, HOME: process.env.HOME, HF_HOME: mkdtempSync(join(tmpdir(), 'cli-hf-')) };

function capture(env: Record<string, string | undefined> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const ctx: Partial<CliContext> = { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: { ...baseEnv, ...env }, stdinIsTTY: false };
  return { ctx, out: () => out.join(''), err: () => err.join('') };
}

describe('accelerate launch with a strategy that is not installed', () => {
  // (@accelerate/plugin-fsdp and @accelerate/plugin-deepspeed are installed in this workspace: their cases are below.)
  it.each([
    [['--use_megatron_lm'], 'MEGATRON_LM', '@accelerate/plugin-megatron'],
  ])('%j stops before spawning and names the package', async (flags, type, pkg) => {
    const c = capture();
    expect(await runCli(['launch', '--num_processes', '2', ...flags, echo], c.ctx)).toBe(1);
    expect(c.err()).toContain(`asks for ${type}`);
    expect(c.err()).toContain(`npm install ${pkg}`);
    expect(c.err()).toContain('Nothing was started.');
    expect(c.out()).toBe(''); // no rank ran
  });

  it('distributed_type: MEGATRON_LM in a config file is checked the same way', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-strategy-'));
    const file = join(dir, 'mlm.yaml');
    writeFileSync(file, 'compute_environment: LOCAL_MACHINE\ndistributed_type: MEGATRON_LM\nnum_processes: 2\nmixed_precision: "no"\n');
    const c = capture();
    expect(await runCli(['launch', '--config_file', file, echo], c.ctx)).toBe(1);
    expect(c.err()).toContain('npm install @accelerate/plugin-megatron');
    expect(c.out()).toBe('');
  });

  it('passes when a package in node_modules declares the strategy (found by its package.json field, whatever its name)', () => {
    const project = mkdtempSync(join(tmpdir(), 'cli-strategy-project-'));
    const pkg = join(project, 'node_modules', 'acme-megatron');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'acme-megatron', version: '1.0.0', type: 'module', accelerate: { plugin: { entry: './index.js', strategy: 'MEGATRON_LM' } } }));
    writeFileSync(join(pkg, 'index.js'), 'export function acceleratePlugin() { return { name: "acme-megatron" }; }\n');
    writeFileSync(join(project, 'train.mjs'), '');
    const resolved = resolveLaunchArgs(launchArgsFromFlags({ use_megatron_lm: true, num_processes: 2 }, 'train.mjs', []), { env: baseEnv });
    expect(checkStrategyPackage(resolved, project)).toBeUndefined();
    expect(checkStrategyPackage(resolved, mkdtempSync(join(tmpdir(), 'cli-strategy-empty-')))).toContain('npm install @accelerate/plugin-megatron');
  });

  it('--use_fsdp passes the package check here: @accelerate/plugin-fsdp is installed (found next to @accelerate/core)', () => {
    const resolved = resolveLaunchArgs(launchArgsFromFlags({ use_fsdp: true, num_processes: 2 }, 'train.mjs', []), { env: baseEnv });
    expect(checkStrategyPackage(resolved, mkdtempSync(join(tmpdir(), 'cli-strategy-empty-')))).toBeUndefined();
  });

  it('--use_deepspeed and distributed_type: DEEPSPEED pass the package check here: @accelerate/plugin-deepspeed is installed (found next to @accelerate/core)', () => {
    const resolved = resolveLaunchArgs(launchArgsFromFlags({ use_deepspeed: true, zero_stage: 2, num_processes: 2 }, 'train.mjs', []), { env: baseEnv });
    expect(checkStrategyPackage(resolved, mkdtempSync(join(tmpdir(), 'cli-strategy-empty-')))).toBeUndefined();
    const dir = mkdtempSync(join(tmpdir(), 'cli-strategy-'));
    const file = join(dir, 'ds.yaml');
    writeFileSync(file, 'compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\ndeepspeed_config:\n  zero_stage: 2\nnum_processes: 2\nmixed_precision: "no"\n');
    const fromFile = resolveLaunchArgs(launchArgsFromFlags({ config_file: file } as never, 'train.mjs', []), { env: baseEnv });
    expect(fromFile.paradigm).toBe('deepspeed');
    expect(checkStrategyPackage(fromFile, dir)).toBeUndefined();
  });
});
