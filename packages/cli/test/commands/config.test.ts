import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadConfigFile } from '@accelerate/core';
import { configToDict } from '@accelerate/core/internal';
import { runCli } from '../../src/program.js';
import { runConfigDefault } from '../../src/commands/config.js';
import { askClusterConfig } from '../../src/commands/questionnaire.js';
import { scriptedPrompter } from '../../src/prompter.js';
import type { CliContext } from '../../src/context.js';

// Files Python `accelerate config` writes, kept with core's config tests.
const FIXTURES = join(import.meta.dirname, '../../../core/test/config/fixtures');
const fixtureText = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');
const fixtureDict = (name: string) => parseYaml(fixtureText(name), { version: '1.1' }) as Record<string, unknown>;

let dir: string;
let out: string[];
let err: string[];
let ctx: Partial<CliContext>;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'acc-cli-'));
  out = [];
  err = [];
  ctx = {
    stdout: (t) => void out.push(t),
    stderr: (t) => void err.push(t),
    env: { HF_HOME: join(dir, 'hf') },
    stdinIsTTY: false,
  };
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const defaultPath = () => join(dir, 'hf/accelerate/default_config.yaml');

const BASIC_BF16 = `compute_environment: LOCAL_MACHINE
debug: false
distributed_type: 'NO'
downcast_bf16: false
enable_cpu_affinity: false
machine_rank: 0
main_training_function: main
mixed_precision: bf16
num_machines: 1
num_processes: 1
rdzv_backend: static
same_network: false
tpu_use_cluster: false
tpu_use_sudo: false
use_cpu: true
`;

describe('accelerate config default', () => {
  it('writes a CPU-only basic config (YAML) at the default location and never overwrites it', async () => {
    expect(await runCli(['config', 'default', '--mixed_precision', 'bf16'], ctx)).toBe(0);
    expect(readFileSync(defaultPath(), 'utf8')).toBe(BASIC_BF16);
    expect(out.join('')).toBe(`accelerate configuration saved at ${defaultPath()}\n`);

    out.length = 0;
    expect(await runCli(['config', 'default', '--mixed_precision', 'fp16'], ctx)).toBe(0);
    expect(out.join('')).toBe(
      `Configuration already exists at ${defaultPath()}, will not override. Run \`accelerate config\` manually, edit the file, or pass a different --config_file.\n`,
    );
    expect(readFileSync(defaultPath(), 'utf8')).toBe(BASIC_BF16);
  });

  it('accepts snake_case, kebab-case and --flag=value spellings', async () => {
    const a = join(dir, 'a.yaml');
    const b = join(dir, 'b.yaml');
    const c = join(dir, 'c.json');
    expect(await runCli(['config', 'default', '--config_file', a, '--mixed-precision', 'bf16'], ctx)).toBe(0);
    expect(await runCli(['config', 'default', '--config-file', b, '--mixed_precision=bf16'], ctx)).toBe(0);
    expect(await runCli(['config', 'default', `--config-file=${c}`], ctx)).toBe(0);
    expect(readFileSync(a, 'utf8')).toBe(BASIC_BF16);
    expect(readFileSync(b, 'utf8')).toBe(BASIC_BF16);
    expect(JSON.parse(readFileSync(c, 'utf8'))).toMatchObject({ distributed_type: 'NO', mixed_precision: 'no' });
    expect(existsSync(defaultPath())).toBe(false);
  });

  it('rejects precisions other than no/fp16/bf16', async () => {
    expect(await runCli(['config', 'default', '--mixed_precision', 'fp8'], ctx)).toBe(1);
    expect(err.join('')).toBe('accelerate: --mixed_precision must be one of: no, fp16, bf16; got "fp8"\n');
    expect(existsSync(defaultPath())).toBe(false);
  });

  it('uses detected accelerators like Python write_basic_config', () => {
    const p = runConfigDefault({ ...(ctx as CliContext), exitCode: 0 }, { configFile: join(dir, 'g.yaml'), devices: { kind: 'GPU', count: 2 } });
    expect(loadConfigFile(p!).config).toMatchObject({ distributed_type: 'MULTI_GPU', num_processes: 2, use_cpu: false });
  });
});

describe('accelerate config update', () => {
  it('converts legacy keys and fills current defaults, keeping the settings', async () => {
    const p = join(dir, 'old.yaml');
    writeFileSync(p, fixtureText('legacy_v0.yaml'));
    expect(await runCli(['config', 'update', '--config_file', p], ctx)).toBe(0);
    expect(out.join('')).toBe(`Successfully updated the configuration file at ${p}.\n`);
    expect(err.join('')).toContain('warning: legacy key "fp16: true" read as "mixed_precision: fp16"');
    expect(readFileSync(p, 'utf8')).toBe(`compute_environment: LOCAL_MACHINE
debug: false
distributed_type: MULTI_GPU
downcast_bf16: false
dynamo_config:
  dynamo_backend: INDUCTOR
enable_cpu_affinity: false
machine_rank: 0
main_training_function: main
mixed_precision: fp16
num_machines: 1
num_processes: 2
rdzv_backend: static
same_network: false
tpu_use_cluster: false
tpu_use_sudo: false
use_cpu: false
`);
  });

  it('leaves a Python-written file byte-identical', async () => {
    const p = join(dir, 'fsdp2.yaml');
    writeFileSync(p, fixtureText('fsdp2.yaml'));
    expect(await runCli(['config', 'update', '--config-file', p], ctx)).toBe(0);
    expect(readFileSync(p, 'utf8')).toBe(fixtureText('fsdp2.yaml'));
  });

  it('fails clearly for a missing or invalid file', async () => {
    expect(await runCli(['config', 'update'], ctx)).toBe(1);
    expect(err.join('')).toBe(
      `accelerate: There is no config file to update at ${defaultPath()}; create one with \`accelerate config\` or \`accelerate config default\`.\n`,
    );
    err.length = 0;
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'distributed_type: NO\nnum_procesess: 2\n');
    expect(await runCli(['config', 'update', '--config_file', bad], ctx)).toBe(1);
    expect(err.join('')).toBe(
      `accelerate: Invalid Accelerate configuration in config file ${bad}: unknown key "num_procesess" (did you mean "num_processes"?)\n`,
    );
    expect(readFileSync(bad, 'utf8')).toBe('distributed_type: NO\nnum_procesess: 2\n');
  });
});

describe('accelerate config (questionnaire)', () => {
  it('refuses without a terminal and points to `config default`', async () => {
    expect(await runCli(['config'], ctx)).toBe(1);
    expect(err.join('')).toBe(
      'accelerate: `accelerate config` asks questions and needs an interactive terminal, but standard input is not a TTY.\n' +
        'Run `accelerate config default [--config_file PATH] [--mixed_precision no|fp16|bf16]` to write a basic config without questions, ' +
        'or write the YAML file yourself (`accelerate env` shows where it goes).\n',
    );
    expect(existsSync(defaultPath())).toBe(false);
  });

  it('multi-CPU answers write exactly the file Python writes, asking the same questions in order', async () => {
    const prompter = scriptedPrompter({ distributed_type: 'MULTI_CPU', num_processes: 4 });
    const file = join(dir, 'mc.yaml');
    expect(await runCli(['config', '--config_file', file], { ...ctx, prompter })).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe(fixtureText('multi_cpu.yaml'));
    expect(prompter.asked).toEqual([
      'compute_environment',
      'distributed_type',
      'num_machines',
      'debug',
      'use_mpirun',
      'use_dynamo',
      'num_processes',
      'mixed_precision',
    ]);
    expect(out.join('')).toBe(`accelerate configuration saved at ${file}\n`);
  });

  it('single-process CPU answers write the Python file, at the default path', async () => {
    const prompter = scriptedPrompter({ distributed_type: 'NO', use_cpu: true });
    expect(await runCli(['config'], { ...ctx, prompter })).toBe(0);
    expect(readFileSync(defaultPath(), 'utf8')).toBe(fixtureText('no_cpu.yaml'));
    expect(prompter.asked).toEqual(['compute_environment', 'distributed_type', 'use_cpu', 'use_dynamo', 'mixed_precision']);
  });

  it('FSDP2 answers give the FSDP2 file (without gpu_ids, which Python only asks for MULTI_* and NO)', async () => {
    const config = await askClusterConfig(
      scriptedPrompter({
        distributed_type: 'MULTI_GPU',
        use_fsdp: true,
        fsdp_auto_wrap_policy: 'TRANSFORMER_BASED_WRAP',
        fsdp_transformer_layer_cls_to_wrap: 'BertLayer',
        fsdp_state_dict_type: 'SHARDED_STATE_DICT',
        num_processes: 2,
        mixed_precision: 'bf16',
      }),
    );
    const expected = fixtureDict('fsdp2.yaml');
    delete expected.gpu_ids;
    expect(configToDict(config as unknown as Record<string, unknown>)).toEqual(expected);
  });

  it('multi-node FSDP1 + dynamo answers give the Python file (minus gpu_ids)', async () => {
    const config = await askClusterConfig(
      scriptedPrompter({
        distributed_type: 'MULTI_GPU',
        num_machines: 2,
        machine_rank: 1,
        main_process_ip: '10.0.0.1',
        main_process_port: 29500,
        use_dynamo: true,
        dynamo_custom_options: true,
        use_fsdp: true,
        fsdp_version: 1,
        fsdp_reshard_after_forward: 'FULL_SHARD',
        fsdp_offload_params: true,
        fsdp_auto_wrap_policy: 'SIZE_BASED_WRAP',
        fsdp_backward_prefetch: 'BACKWARD_PRE',
        fsdp_state_dict_type: 'FULL_STATE_DICT',
        num_processes: 8,
        mixed_precision: 'fp16',
      }),
    );
    const expected = fixtureDict('fsdp1_multinode.yaml');
    delete expected.gpu_ids;
    expect(configToDict(config as unknown as Record<string, unknown>)).toEqual(expected);
  });

  it('DeepSpeed ZeRO-3 + FP8 (TransformerEngine) answers give the Python file (minus gpu_ids)', async () => {
    const config = await askClusterConfig(
      scriptedPrompter({
        distributed_type: 'MULTI_GPU',
        use_deepspeed: true,
        zero_stage: 3,
        offload_optimizer_device: 'none',
        offload_param_device: 'nvme',
        gradient_accumulation_steps: 4,
        use_gradient_clipping: true,
        zero3_save_16bit_model: true,
        num_processes: 2,
        mixed_precision: 'fp8',
        fp8_backend: 'TE',
      }),
    );
    const expected = fixtureDict('deepspeed_fp8.yaml');
    delete expected.gpu_ids;
    expect(configToDict(config as unknown as Record<string, unknown>)).toEqual(expected);
  });

  it('rejects MULTI_GPU with one process on one machine, as Python does', async () => {
    await expect(askClusterConfig(scriptedPrompter({ distributed_type: 'MULTI_GPU', num_processes: 1 }))).rejects.toThrow(
      'Specified distributed type MULTI_GPU but only using 1 GPU on a single machine. Please select `No distributed training` for the type of machine you are using.',
    );
  });

  it('SageMaker is not offered by this questionnaire', async () => {
    const prompter = scriptedPrompter({ compute_environment: 'AMAZON_SAGEMAKER' });
    expect(await runCli(['config', '--config_file', join(dir, 's.yaml')], { ...ctx, prompter })).toBe(1);
    expect(err.join('')).toMatch(/^accelerate: accelerate-ts cannot launch on Amazon SageMaker/);
    expect(existsSync(join(dir, 's.yaml'))).toBe(false);
  });

  it('expands ~ in the mpirun hostfile, as Python does', async () => {
    const config = await askClusterConfig(scriptedPrompter({ distributed_type: 'MULTI_CPU', use_mpirun: true }));
    expect(config.mpirun_config).toEqual({ mpirun_hostfile: join(homedir(), 'hostfile') });
  });
});
