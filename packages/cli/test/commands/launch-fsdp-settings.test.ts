// `accelerate launch` with FSDP asks the installed FSDP plugin (loaded dynamically: the CLI does
// not depend on it) to check the launch's FSDP settings before any rank starts.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchArgsFromFlags, resolveLaunchArgs } from '@accelerate/core/internal';
import { checkFsdpSettings, FSDP_PLUGIN_PACKAGE } from '../../src/commands/launch.js';
import type { CliContext } from '../../src/context.js';

const env: Record<string, string | undefined> = { PATH: process.env.PATH, HOME: process.env.HOME, HF_HOME: mkdtempSync(join(tmpdir(), 'cli-fsdp-hf-')) };

/** A context whose FSDP plugin is the source of @accelerate/plugin-fsdp. */
function ctxWithPlugin(): CliContext {
  return {
    stdout: () => {},
    stderr: () => {},
    env,
    stdinIsTTY: false,
    exitCode: 0,
    importModule: async (name) => {
      if (name === FSDP_PLUGIN_PACKAGE) return import('../../../plugin-fsdp/src/options.js');
      throw new Error(`unexpected import ${name}`);
    },
  };
}

const resolve = (flags: Record<string, unknown>, configFile?: string) =>
  resolveLaunchArgs(launchArgsFromFlags({ ...flags, ...(configFile ? { config_file: configFile } : {}) } as never, 'train.mjs', []), { env });

describe('accelerate launch: FSDP settings checked before spawning', () => {
  it('[B62] FSDP2 with a backward prefetch from the config file: refused, naming the key, the file and the fix', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-fsdp-'));
    const file = join(dir, 'fsdp.yaml');
    writeFileSync(
      file,
      'compute_environment: LOCAL_MACHINE\ndistributed_type: FSDP\nnum_processes: 2\nmixed_precision: "no"\nfsdp_config:\n  fsdp_version: 2\n  fsdp_backward_prefetch: BACKWARD_PRE\n',
    );
    const refusal = await checkFsdpSettings(resolve({}, file), ctxWithPlugin());
    expect(refusal).toContain(`fsdp_config.fsdp_backward_prefetch="BACKWARD_PRE" (in ${file}): FSDP version 2 has no backward prefetch setting`);
    expect(refusal).toContain(`Remove fsdp_backward_prefetch from ${file}`);
    expect(refusal).toContain('Nothing was started.');
  });

  it('a sharding strategy on one process, and a hybrid group that does not fit the world, from launch flags', async () => {
    const one = await checkFsdpSettings(resolve({ use_fsdp: true, num_processes: 1, fsdp_sharding_strategy: 'SHARD_GRAD_OP' }), ctxWithPlugin());
    expect(one).toContain('--fsdp_sharding_strategy="SHARD_GRAD_OP" (accelerate launch) shards parameters across processes, but this run has 1 process');
    expect(one).toContain('pass --fsdp_sharding_strategy NO_SHARD');
    const hybrid = await checkFsdpSettings(resolve({ use_fsdp: true, num_processes: 2, fsdp_sharding_strategy: 'HYBRID_SHARD' }), ctxWithPlugin());
    expect(hybrid).toContain('the 2 processes of one machine (LOCAL_WORLD_SIZE) and the world size is 2');
  });

  it('valid settings, the launcher defaults, and other paradigms pass', async () => {
    expect(await checkFsdpSettings(resolve({ use_fsdp: true, num_processes: 2 }), ctxWithPlugin())).toBeUndefined();
    expect(await checkFsdpSettings(resolve({ use_fsdp: true, num_processes: 2, fsdp_version: 2 }), ctxWithPlugin())).toBeUndefined();
    expect(await checkFsdpSettings(resolve({ use_fsdp: true, num_processes: 4, fsdp_sharding_strategy: 'HYBRID_SHARD', num_machines: 2, machine_rank: 0, main_process_ip: '127.0.0.1', main_process_port: 29500 }), ctxWithPlugin())).toBeUndefined();
    expect(await checkFsdpSettings(resolve({ multi_gpu: true, num_processes: 2 }), ctxWithPlugin())).toBeUndefined();
  });

  it('a plugin that does not load, or has no validator, is not asked', async () => {
    const failing: CliContext = { ...ctxWithPlugin(), importModule: async () => Promise.reject(new Error('not installed')) };
    expect(await checkFsdpSettings(resolve({ use_fsdp: true, num_processes: 1 }), failing)).toBeUndefined();
    const bare: CliContext = { ...ctxWithPlugin(), importModule: async () => ({ acceleratePlugin: () => ({ name: 'x' }) }) };
    expect(await checkFsdpSettings(resolve({ use_fsdp: true, num_processes: 1 }), bare)).toBeUndefined();
  });
});
