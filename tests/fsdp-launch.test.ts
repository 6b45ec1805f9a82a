// The three ways to turn FSDP on — launch flags, a default_config.yaml as Python's
// `accelerate config` writes it, and fsdp({...}) in code — reach the same plugin with
// the same values, through the real `accelerate launch` and 2 processes.
import { describe, it, expect } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanEnv, fixture, rankResults, runAccelerate } from './helpers.js';

const script = fixture('fsdp/report-plan.ts');

/** fsdp_config as Python Accelerate 1.x's `accelerate config` writes it (FSDP1 keys). */
const PYTHON_CONFIG = `compute_environment: LOCAL_MACHINE
debug: false
distributed_type: FSDP
downcast_bf16: 'no'
enable_cpu_affinity: false
fsdp_config:
  fsdp_activation_checkpointing: false
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_backward_prefetch: BACKWARD_POST
  fsdp_cpu_ram_efficient_loading: true
  fsdp_forward_prefetch: false
  fsdp_offload_params: false
  fsdp_sharding_strategy: SHARD_GRAD_OP
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_sync_module_states: true
  fsdp_transformer_layer_cls_to_wrap: TransformerEncoderLayer
  fsdp_use_orig_params: true
  fsdp_version: 1
machine_rank: 0
main_training_function: main
mixed_precision: 'no'
num_machines: 1
num_processes: 2
rdzv_backend: static
same_network: true
tpu_env: []
tpu_use_cluster: false
tpu_use_sudo: false
use_cpu: true
`;

async function launch(args: string[], env: Record<string, string> = {}) {
  const r = await runAccelerate(['launch', ...args, script], { env: cleanEnv(env), timeoutMs: 120_000 });
  expect(r.code, r.stderr.slice(-3000)).toBe(0);
  const ranks = rankResults(r.stdout);
  expect(ranks).toHaveLength(2);
  return ranks;
}

describe('turning FSDP on (accelerate launch, 2 processes)', () => {
  it('[B61][B62] flags, a Python-written config file and fsdp({...}) in code give the same plan, units and losses', async () => {
    const flags = await launch([
      '--num_processes', '2', '--use_fsdp', '--fsdp_sharding_strategy', '2', '--fsdp_auto_wrap_policy', 'TRANSFORMER_BASED_WRAP',
      '--fsdp_transformer_layer_cls_to_wrap', 'TransformerEncoderLayer', '--fsdp_backward_prefetch', 'BACKWARD_POST', '--fsdp_state_dict_type', 'SHARDED_STATE_DICT',
    ]);
    const dir = mkdtempSync(join(tmpdir(), 'fsdp-config-'));
    writeFileSync(join(dir, 'default_config.yaml'), PYTHON_CONFIG);
    const file = await launch(['--config_file', join(dir, 'default_config.yaml')]);
    const code = await launch(['--num_processes', '2'], { FSDP_IN_CODE: '1' });
    for (const run of [flags, file, code]) {
      expect(run[0].strategy).toBe('FSDP');
      expect(run[0].distributedType).toBe('FSDP');
      expect(run[0].plan.shardingStrategy).toBe('SHARD_GRAD_OP');
      expect(run[0].plan.autoWrap).toEqual({ kind: 'transformer', classes: ['TransformerEncoderLayer'] });
      expect(run[0].plan.backwardPrefetch).toBe('BACKWARD_POST');
      expect(run[0].plan.stateDictType).toBe('SHARDED_STATE_DICT');
      expect(run[0].units).toEqual(['1', '']);
      expect(run[1].plan).toEqual(run[0].plan);
      expect(run[0].losses).toHaveLength(2);
    }
    expect(file[0].plan).toEqual(flags[0].plan);
    expect(code[0].plan).toEqual(flags[0].plan);
    expect(file[0].losses).toEqual(flags[0].losses);
    expect(code[0].losses).toEqual(flags[0].losses);
  }, 240_000);

  it('a bad FSDP setting stops accelerate launch before any process starts, naming the flag', async () => {
    const r = await runAccelerate(['launch', '--num_processes', '2', '--use_fsdp', '--fsdp_version', '2', '--fsdp_forward_prefetch', 'true', script], { env: cleanEnv(), timeoutMs: 30_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/fsdp_forward_prefetch/);
    expect(r.stdout).not.toContain('[rank');
  }, 60_000);
});
