// `accelerate launch` with DeepSpeed asks the installed DeepSpeed plugin (loaded dynamically: the CLI
// does not depend on it) to check the launch's DeepSpeed settings before any rank starts.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchArgsFromFlags, resolveLaunchArgs } from '@accelerate/core/internal';
import { checkDeepSpeedSettings, DEEPSPEED_PLUGIN_PACKAGE } from '../../src/commands/launch.js';
import { runCli } from '../../src/program.js';
import type { CliContext } from '../../src/context.js';

const env: Record<string, string | undefined> = { PATH: process.env.PATH, HOME: process.env.HOME, HF_HOME: mkdtempSync(join(tmpdir(), 'cli-ds-hf-')) };
const echo = join(import.meta.dirname, '..', 'fixtures', 'echo-rank.mjs');

/** A context whose DeepSpeed plugin is the source of @accelerate/plugin-deepspeed. */
function ctxWithPlugin(): CliContext {
  return {
    stdout: () => {},
    stderr: () => {},
    env,
    stdinIsTTY: false,
    exitCode: 0,
    importModule: async (name) => {
      if (name === DEEPSPEED_PLUGIN_PACKAGE) return import('../../../plugin-deepspeed/src/config.js');
      throw new Error(`unexpected import ${name}`);
    },
  };
}

const resolve = (flags: Record<string, unknown>, configFile?: string) =>
  resolveLaunchArgs(launchArgsFromFlags({ ...flags, ...(configFile ? { config_file: configFile } : {}) } as never, 'train.mjs', []), { env });

function files(ds: object, yaml: (dsPath: string) => string) {
  const dir = mkdtempSync(join(tmpdir(), 'cli-ds-'));
  const dsPath = join(dir, 'ds_config.json');
  writeFileSync(dsPath, JSON.stringify(ds));
  const yamlPath = join(dir, 'accelerate.yaml');
  writeFileSync(yamlPath, yaml(dsPath));
  return { dir, dsPath, yamlPath };
}

describe('accelerate launch: DeepSpeed settings checked before spawning', () => {
  it('[B65] a DeepSpeed config file and accelerate-config DeepSpeed fields together: refused, naming them', async () => {
    const { yamlPath } = files({ zero_optimization: { stage: 2 }, gradient_accumulation_steps: 1 }, (p) =>
      `compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\nnum_processes: 2\ndeepspeed_config:\n  deepspeed_config_file: ${p}\n  zero_stage: 3\n  gradient_clipping: 1.0\n`,
    );
    const refusal = await checkDeepSpeedSettings(resolve({}, yamlPath), ctxWithPlugin());
    expect(refusal).toContain('must not also set gradient_clipping, zero_stage');
    expect(refusal).toContain('Nothing was started.');
  });

  it('[B65] a DeepSpeed config file without zero_optimization: refused', async () => {
    const { dsPath } = files({ gradient_accumulation_steps: 1 }, () => '');
    const refusal = await checkDeepSpeedSettings(resolve({ use_deepspeed: true, deepspeed_config_file: dsPath, num_processes: 2 }), ctxWithPlugin());
    expect(refusal).toContain('has no zero_optimization section');
  });

  it('[B66] a fixed train_batch_size that does not fit the process count: refused with the three numbers', async () => {
    const { dsPath } = files({ zero_optimization: { stage: 2 }, gradient_accumulation_steps: 2, train_micro_batch_size_per_gpu: 4, train_batch_size: 8 }, () => '');
    const refusal = await checkDeepSpeedSettings(resolve({ use_deepspeed: true, deepspeed_config_file: dsPath, num_processes: 2 }), ctxWithPlugin());
    expect(refusal).toMatch(/train_batch_size is 8 .*\(4\) × gradient_accumulation_steps \(2\) × processes \(2\) = 16/);
  });

  it('[B67] mixed precision bf16 with fp16 enabled in the DeepSpeed config: refused', async () => {
    const { dsPath } = files({ zero_optimization: { stage: 2 }, gradient_accumulation_steps: 1, fp16: { enabled: true } }, () => '');
    const refusal = await checkDeepSpeedSettings(resolve({ use_deepspeed: true, deepspeed_config_file: dsPath, num_processes: 2, mixed_precision: 'bf16' }), ctxWithPlugin());
    expect(refusal).toContain('mixed precision is bf16, but the DeepSpeed config');
  });

  it('valid settings (flags alone, or a Python-style config with a DeepSpeed file and mixed_precision: no) pass', async () => {
    expect(await checkDeepSpeedSettings(resolve({ use_deepspeed: true, zero_stage: 3, num_processes: 2 }), ctxWithPlugin())).toBeUndefined();
    const { yamlPath } = files({ zero_optimization: { stage: 2 }, gradient_accumulation_steps: 1, train_batch_size: 'auto' }, (p) =>
      `compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\nnum_processes: 2\nmixed_precision: "no"\ndeepspeed_config:\n  deepspeed_config_file: ${p}\n  zero3_init_flag: false\n`,
    );
    expect(await checkDeepSpeedSettings(resolve({}, yamlPath), ctxWithPlugin())).toBeUndefined();
    expect(await checkDeepSpeedSettings(resolve({ use_fsdp: true, num_processes: 2 }), ctxWithPlugin())).toBeUndefined();
  });

  it('through the real command: the installed plugin is found by discovery and nothing starts', async () => {
    const { dsPath } = files({ gradient_accumulation_steps: 1 }, () => '');
    const out: string[] = [];
    const err: string[] = [];
    const ctx: Partial<CliContext> = { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env, stdinIsTTY: false };
    expect(await runCli(['launch', '--num_processes', '2', '--use_deepspeed', '--deepspeed_config_file', dsPath, echo], ctx)).toBe(1);
    expect(err.join('')).toContain('the DeepSpeed settings of this launch are invalid (checked by @accelerate/plugin-deepspeed)');
    expect(err.join('')).toContain('has no zero_optimization section');
    expect(out.join('')).toBe('');
  });
});
