/**
 * The settings table (config/settings.ts): every row reaches the same value
 * through its flag, its variable and its YAML key, with the right source;
 * the launcher and the ranks resolve through the same rows; a launched rank
 * reads what the launcher exported, not the config file; plugin defaults sit
 * below every other source.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/config/errors.js';
import { saveConfigFile } from '../../src/config/file.js';
import { resolveConfig } from '../../src/config/resolve.js';
import { SECTION_META, SETTINGS, settingRows, type SettingRow, type SettingSectionName } from '../../src/config/settings.js';
import { CLUSTER_CONFIG_FIELDS } from '../../src/config/schema.js';
import { launchArgsFromFlags, resolveLaunchArgs } from '../../src/launch/args.js';
import { LAUNCH_FLAGS, launchFlag, LaunchError, parseLaunchFlagValue, type LaunchValue } from '../../src/launch/flags.js';
import { buildLaunchPlan } from '../../src/launch/plan.js';
import { KNOWN_ACCELERATE_ENV_VARS } from '../../src/config/env.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'acc-settings-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FIXTURES = join(import.meta.dirname, 'fixtures');
const noHome = () => ({ HF_HOME: join(dir, 'no-hf-home') });

/** A value for the row that differs from its default where the row allows it. */
function sample(row: SettingRow): unknown {
  if (row.section === 'fsdp' && row.key === 'reshardAfterForward') return false;
  if (row.section === 'megatron' && row.key === 'attentionBackend') return 'flash';
  if (row.section === 'parallelism' && row.key === 'spSeqLength') return '128';
  if (row.enum) {
    const allowed = row.enum.filter((v) => (row.fileSpec.enum ?? row.enum)!.includes(v));
    return allowed.find((v) => v !== row.default) ?? allowed[0];
  }
  switch (row.type) {
    case 'boolean':
      return row.default === true ? false : true;
    case 'integer':
      return 7;
    case 'number':
      return 0.25;
    case 'boolean[]':
      return [true, false, true];
    default:
      return 'Sample_Value';
  }
}

const flagText = (v: unknown) => (Array.isArray(v) ? v.join(',') : String(v));
const yamlSubKey = (row: SettingRow) => row.yaml!.slice(SECTION_META[row.section].yaml.length + 1);

function fileWith(row: SettingRow, value: unknown, name: string, extra: Record<string, unknown> = {}): string {
  const path = join(dir, `${name}.yaml`);
  saveConfigFile({ distributed_type: 'NO', ...extra, [SECTION_META[row.section].yaml]: { [yamlSubKey(row)]: value } }, path);
  return path;
}

const section = (r: ReturnType<typeof resolveConfig>, row: SettingRow) =>
  (r.section(row.section) as Record<string, { value: unknown; source: string; detail: string }>)[row.key];

describe('the settings table', () => {
  const rows = settingRows();

  it('has sections for FSDP, DeepSpeed, Megatron-LM, parallelism, dynamo and FP8, with names from the spec and Python', () => {
    expect(Object.keys(SETTINGS)).toEqual(['fsdp', 'deepspeed', 'megatron', 'parallelism', 'dynamo', 'fp8']);
    expect(SETTINGS.fsdp.shardingStrategy).toMatchObject({ yaml: 'fsdp_config.fsdp_sharding_strategy', flag: 'fsdp_sharding_strategy', env: 'FSDP_SHARDING_STRATEGY' });
    expect(SETTINGS.fsdp.transformerLayerClsToWrap.env).toBe('FSDP_TRANSFORMER_CLS_TO_WRAP');
    expect(SETTINGS.deepspeed.zeroStage).toMatchObject({ yaml: 'deepspeed_config.zero_stage', flag: 'zero_stage', env: 'ACCELERATE_DEEPSPEED_ZERO_STAGE' });
    expect(SETTINGS.deepspeed.zero3InitFlag.env).toBe('ACCELERATE_DEEPSPEED_ZERO3_INIT');
    expect(SETTINGS.deepspeed.gradientClipping.env).toBe('ACCELERATE_GRADIENT_CLIPPING');
    expect(SETTINGS.megatron.tpDegree).toMatchObject({ yaml: 'megatron_lm_config.megatron_lm_tp_degree', flag: 'megatron_lm_tp_degree', env: 'MEGATRON_LM_TP_DEGREE' });
    expect(SETTINGS.parallelism.tpSize).toMatchObject({ yaml: 'parallelism_config.parallelism_config_tp_size', flag: 'parallelism_config_tp_size', env: 'PARALLELISM_CONFIG_TP_SIZE' });
    expect(SETTINGS.dynamo.backend).toMatchObject({ yaml: 'dynamo_config.dynamo_backend', flag: 'dynamo_backend', env: 'ACCELERATE_DYNAMO_BACKEND' });
    expect(SETTINGS.fp8.backend).toMatchObject({ yaml: 'fp8_config.backend', flag: 'fp8_backend', env: 'ACCELERATE_FP8_BACKEND' });
    expect(SETTINGS.fp8.overrideLinearPrecision.envParts).toEqual(['ACCELERATE_FP8_OVERRIDE_FPROP', 'ACCELERATE_FP8_OVERRIDE_DGRAD', 'ACCELERATE_FP8_OVERRIDE_WGRAD']);
  });

  it('drives the config-file schema, the launch flags and the known variables', () => {
    for (const row of rows) {
      const fields = CLUSTER_CONFIG_FIELDS[SECTION_META[row.section].yaml].properties!;
      expect(fields[yamlSubKey(row)], row.yaml).toBe(row.fileSpec);
      if (row.flag && !row.sharedFlag) expect(launchFlag(row.flag)?.help, row.flag).toBe(row.help);
      for (const name of [row.env, ...(row.envParts ?? [])]) {
        if (name?.startsWith('ACCELERATE_')) expect(KNOWN_ACCELERATE_ENV_VARS, name).toContain(name);
      }
    }
    // Each flag once.
    const names = LAUNCH_FLAGS.map((f) => f.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it.each(rows.map((r) => [`${r.section}.${r.key}`, r] as const))('%s: the flag, the env var and the YAML key reach the same value', (_name, row) => {
    const value = sample(row);
    const expected = row.parse(value);
    expect(expected.ok).toBe(true);
    const want = (expected as { value: unknown }).value;

    if (row.yaml) {
      const path = fileWith(row, value, `row-${row.section}-${row.key}`);
      const r = resolveConfig({ env: {}, configFile: path });
      expect(section(r, row)).toEqual({ value: want, source: 'config file', detail: `${path} (${row.yaml})` });
    }
    if (row.env || row.envParts) {
      const env = row.toEnv(want as never);
      const r = resolveConfig({ env, configFile: false });
      expect(section(r, row)).toEqual({ value: want, source: 'env', detail: row.envParts ? row.envParts.join('/') : row.env });
    }
    if (row.flag) {
      const spec = launchFlag(row.flag)!;
      const parsed = parseLaunchFlagValue(spec, flagText(value));
      const r = resolveConfig({ env: {}, configFile: false, sectionFlags: { [row.flag]: parsed } });
      expect(section(r, row)).toEqual({ value: want, source: 'launch flag', detail: `--${row.flag}` });
    }
    // Nothing set: the row's default.
    expect(section(resolveConfig({ env: {}, configFile: false }), row)).toEqual({ value: row.default, source: 'default', detail: '' });
  });
});

// Flags that make the launcher export a section (and the conditions of its rows).
const ENABLE: Record<SettingSectionName, { flags: Record<string, LaunchValue>; mixedPrecision?: 'fp8' }> = {
  fsdp: { flags: { use_fsdp: true } },
  deepspeed: { flags: { use_deepspeed: true } },
  megatron: { flags: { use_megatron_lm: true } },
  parallelism: { flags: { use_fsdp: true, fsdp_version: '2', use_parallelism_config: true, parallelism_config_cp_size: 2, parallelism_config_sp_size: 2 } },
  dynamo: { flags: { dynamo_backend: 'inductor' } },
  fp8: { flags: {}, mixedPrecision: 'fp8' },
};

describe('one resolver for the launcher and its ranks', () => {
  const exported = settingRows().filter((r) => (r.env || r.envParts) && !r.sharedFlag);

  it.each(exported.map((r) => [`${r.section}.${r.key}`, r] as const))(
    '%s: the launcher exports it and the rank reads it back with the launcher\'s source',
    (_name, row) => {
      const value = sample(row);
      const want = (row.parse(value) as { value: unknown }).value;
      const enable = ENABLE[row.section];
      const extra: Record<string, LaunchValue> = { ...enable.flags };
      // fsdp_sync_module_states false needs fsdp_cpu_ram_efficient_loading false (checked by the launcher).
      if (row === SETTINGS.fsdp.syncModuleStates) extra.fsdp_cpu_ram_efficient_loading = false;
      let configFile: string | undefined;
      if (row.flag) {
        extra[row.flag] = parseLaunchFlagValue(launchFlag(row.flag)!, flagText(value));
      } else {
        configFile = fileWith(row, value, `launch-${row.section}-${row.key}`);
      }
      const args = launchArgsFromFlags({ ...extra, num_processes: 2, config_file: configFile, mixed_precision: enable.mixedPrecision });
      const resolved = resolveLaunchArgs(args, { env: noHome() });
      const plan = buildLaunchPlan(resolved, { port: 29555, cpuCount: 2, env: {} });
      const rankEnv = plan.ranks[1].env;
      const variable = row.envParts ? row.envParts.join('/') : row.env!;
      const r = resolveConfig({ env: rankEnv });
      const via = row.flag ? `--${row.flag}` : `${configFile} (${row.yaml})`;
      expect(section(r, row)).toEqual({ value: want, source: row.flag ? 'launch flag' : 'config file', detail: `${via} (via ${variable})` });
    },
  );

  it('a rank launched by the launcher does not read the config file again (deleted or changed after the launch)', () => {
    const path = join(dir, 'launched.yaml');
    copyFileSync(join(FIXTURES, 'fsdp2.yaml'), path);
    const plan = buildLaunchPlan(resolveLaunchArgs({ configFile: path }, { env: noHome() }), { port: 29556, cpuCount: 2, env: {} });
    const env = plan.ranks[1].env;
    expect(env.ACCELERATE_CONFIG_EXPORTED).toBe('1');
    expect(env.ACCELERATE_DISTRIBUTED_TYPE).toBe('FSDP');

    const check = () => {
      const r = resolveConfig({ env });
      expect(r.configFile).toBeNull();
      expect(r.mixedPrecision).toMatchObject({ value: 'bf16', source: 'config file' });
      expect(r.distributedType).toEqual({ value: 'FSDP', source: 'config file', detail: `${path} (distributed_type) (via ACCELERATE_DISTRIBUTED_TYPE)` });
      expect(r.numProcesses).toMatchObject({ value: 2, source: 'config file' });
      const fsdp = r.section('fsdp');
      expect(fsdp.version).toEqual({ value: 2, source: 'config file', detail: `${path} (fsdp_config.fsdp_version) (via FSDP_VERSION)` });
      expect(fsdp.autoWrapPolicy.value).toBe('TRANSFORMER_BASED_WRAP');
      expect(fsdp.transformerLayerClsToWrap.value).toBe('BertLayer');
      expect(fsdp.stateDictType.value).toBe('SHARDED_STATE_DICT');
      expect(fsdp.offloadParams).toMatchObject({ value: false, source: 'config file' });
    };
    check();
    writeFileSync(path, 'distributed_type: NO\nmixed_precision: fp16\nfsdp_config:\n  fsdp_version: 1\n  fsdp_offload_params: true\n');
    check();
    rmSync(path);
    check();
  });

  it('a rank started without the launcher (tsx train.ts, torchrun) still reads the file and the env', () => {
    const path = join(dir, 'direct.yaml');
    copyFileSync(join(FIXTURES, 'fsdp2.yaml'), path);
    const r = resolveConfig({ env: { ACCELERATE_CONFIG_FILE: path, WORLD_SIZE: '2', RANK: '1', LOCAL_WORLD_SIZE: '2', FSDP_OFFLOAD_PARAMS: 'yes' } });
    expect(r.configFile?.path).toBe(path);
    expect(r.section('fsdp').version).toEqual({ value: 2, source: 'config file', detail: `${path} (fsdp_config.fsdp_version)` });
    expect(r.section('fsdp').offloadParams).toEqual({ value: true, source: 'env', detail: 'FSDP_OFFLOAD_PARAMS' });
    expect(r.numProcesses).toEqual({ value: 2, source: 'env', detail: 'WORLD_SIZE' });
  });

  it('world settings come from detectWorld: torchrun, MPI and SLURM variables', () => {
    const slurm = resolveConfig({
      env: { SLURM_PROCID: '5', SLURM_NTASKS: '8', SLURM_LOCALID: '1', SLURM_NODEID: '1', SLURM_TASKS_PER_NODE: '4(x2)', SLURM_JOB_NODELIST: 'node[03-04]' },
      configFile: false,
    });
    expect(slurm.numProcesses).toEqual({ value: 8, source: 'env', detail: 'SLURM_NTASKS' });
    expect(slurm.numMachines).toEqual({ value: 2, source: 'env', detail: 'SLURM_NTASKS / SLURM_TASKS_PER_NODE' });
    expect(slurm.machineRank).toEqual({ value: 1, source: 'env', detail: 'SLURM_NODEID' });
    expect(slurm.mainProcessIp).toEqual({ value: 'node03', source: 'env', detail: 'SLURM_JOB_NODELIST' });
    const mpi = resolveConfig({ env: { OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_LOCAL_SIZE: '2' }, configFile: false });
    expect(mpi.numProcesses).toEqual({ value: 4, source: 'env', detail: 'OMPI_COMM_WORLD_SIZE' });
    expect(mpi.numMachines.value).toBe(2);
    expect(mpi.machineRank).toEqual({ value: 1, source: 'env', detail: 'OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_LOCAL_SIZE' });
    const torchrun = resolveConfig({ env: { WORLD_SIZE: '4', RANK: '2', LOCAL_WORLD_SIZE: '2', GROUP_RANK: '1', MASTER_ADDR: '10.0.0.1', MASTER_PORT: '29400' }, configFile: false });
    expect(torchrun.machineRank).toEqual({ value: 1, source: 'env', detail: 'GROUP_RANK' });
    expect(torchrun.mainProcessIp).toEqual({ value: '10.0.0.1', source: 'env', detail: 'MASTER_ADDR' });
    expect(torchrun.mainProcessPort).toEqual({ value: 29400, source: 'env', detail: 'MASTER_PORT' });
  });
});

describe('Python-written configs resolve to the typed sections', () => {
  it('fsdp_config (FSDP1 and FSDP2) and dynamo_config', () => {
    const f1 = join(FIXTURES, 'fsdp1_multinode.yaml');
    const r1 = resolveConfig({ env: {}, configFile: f1 });
    expect(r1.sectionValues('fsdp')).toMatchObject({
      version: 1,
      reshardAfterForward: 'FULL_SHARD',
      shardingStrategy: 'FULL_SHARD',
      offloadParams: true,
      autoWrapPolicy: 'SIZE_BASED_WRAP',
      backwardPrefetch: 'BACKWARD_PRE',
      minNumParams: 100_000_000,
      stateDictType: 'FULL_STATE_DICT',
      useOrigParams: true,
      syncModuleStates: true,
    });
    expect(r1.section('fsdp').reshardAfterForward).toEqual({ value: 'FULL_SHARD', source: 'config file', detail: `${f1} (fsdp_config.fsdp_reshard_after_forward)` });
    expect(r1.section('fsdp').shardingStrategy.source).toBe('default');
    expect(r1.sectionValues('dynamo')).toEqual({ backend: 'INDUCTOR', mode: 'default', useFullgraph: false, useDynamic: false, useRegionalCompilation: false });
    const r2 = resolveConfig({ env: {}, configFile: join(FIXTURES, 'fsdp2.yaml') });
    expect(r2.sectionValues('fsdp')).toMatchObject({ version: 2, reshardAfterForward: true, transformerLayerClsToWrap: 'BertLayer', stateDictType: 'SHARDED_STATE_DICT' });
  });

  it('deepspeed_config and fp8_config', () => {
    const r = resolveConfig({ env: {}, configFile: join(FIXTURES, 'deepspeed_fp8.yaml') });
    expect(r.sectionValues('deepspeed')).toMatchObject({
      zeroStage: 3,
      offloadOptimizerDevice: 'none',
      offloadParamDevice: 'nvme',
      offloadParamNvmePath: '/nvme',
      gradientAccumulationSteps: 4,
      gradientClipping: 1,
      zero3InitFlag: false,
      zero3Save16bitModel: true,
    });
    expect(r.sectionValues('fp8')).toMatchObject({
      backend: 'TE',
      format: 'HYBRID',
      amaxComputeAlgorithm: 'max',
      amaxHistoryLength: 1024,
      overrideLinearPrecision: [false, false, false],
      useAutocastDuringEval: false,
    });
  });

  it('megatron_lm_config and parallelism_config', () => {
    const path = join(FIXTURES, 'megatron_parallelism.yaml');
    const r = resolveConfig({ env: {}, configFile: path });
    expect(r.distributedType.value).toBe('MEGATRON_LM');
    expect(r.sectionValues('megatron')).toMatchObject({
      tpDegree: 2,
      ppDegree: 2,
      numMicroBatches: 4,
      sequenceParallelism: true,
      recomputeActivations: true,
      useDistributedOptimizer: true,
      gradientClipping: 1,
    });
    expect(r.section('parallelism').tpSize).toEqual({ value: 2, source: 'config file', detail: `${path} (parallelism_config.parallelism_config_tp_size)` });
    expect(r.sectionValues('parallelism')).toMatchObject({ dpReplicateSize: 1, dpShardSize: 2, tpSize: 2, cpSize: 1, cpBackend: 'torch', spSize: 1 });
  });
});

describe('plugin defaults', () => {
  it('fill what nothing else set, below file, env, flags and code', () => {
    const r = resolveConfig({ env: { FSDP_OFFLOAD_PARAMS: 'false' }, configFile: false, pluginDefaults: { fsdp: { offloadParams: true, version: 2, autoWrapPolicy: 'NO_WRAP' } }, pluginName: 'FsdpPlugin' });
    expect(r.section('fsdp').version).toEqual({ value: 2, source: 'plugin default', detail: 'FsdpPlugin: fsdp.version' });
    expect(r.section('fsdp').offloadParams).toEqual({ value: false, source: 'env', detail: 'FSDP_OFFLOAD_PARAMS' });
    const coded = resolveConfig({ env: {}, configFile: false, sections: { fsdp: { autoWrapPolicy: 'SIZE_BASED_WRAP' } }, pluginDefaults: { fsdp: { autoWrapPolicy: 'NO_WRAP' } } });
    expect(coded.section('fsdp').autoWrapPolicy).toEqual({ value: 'SIZE_BASED_WRAP', source: 'constructor', detail: 'autoWrapPolicy' });
  });

  it('withPluginDefaults returns a new configuration; the launcher\'s exported defaults rank below them, its flags above', () => {
    const defaultsOnly = buildLaunchPlan(resolveLaunchArgs({ numProcesses: 2, useFsdp: true }, { env: noHome() }), { port: 29557, cpuCount: 2, env: {} });
    const base = resolveConfig({ env: defaultsOnly.ranks[0].env });
    expect(base.section('fsdp').version).toEqual({ value: 1, source: 'default', detail: 'FSDP_VERSION' });
    const withPlugin = base.withPluginDefaults({ fsdp: { version: 2, minNumParams: 10 } }, 'FsdpPlugin');
    expect(withPlugin).not.toBe(base);
    expect(base.section('fsdp').version.value).toBe(1);
    expect(withPlugin.section('fsdp').version).toEqual({ value: 2, source: 'plugin default', detail: 'FsdpPlugin: fsdp.version' });
    expect(withPlugin.section('fsdp').minNumParams.value).toBe(10);
    expect(withPlugin.mixedPrecision).toEqual(base.mixedPrecision);

    const flagged = buildLaunchPlan(resolveLaunchArgs({ numProcesses: 2, useFsdp: true, extra: { fsdp_version: '1' } }, { env: noHome() }), { port: 29558, cpuCount: 2, env: {} });
    const kept = resolveConfig({ env: flagged.ranks[0].env }).withPluginDefaults({ fsdp: { version: 2 } });
    expect(kept.section('fsdp').version).toEqual({ value: 1, source: 'launch flag', detail: '--fsdp_version (via FSDP_VERSION)' });
    expect(() => base.withPluginDefaults({ fsdp: { version: 3 as never } }, 'FsdpPlugin')).toThrow(/fsdp\.version=3 is not one of: 1, 2/);
    // A plugin's own section (not in the table) has no settings.
    expect(base.section('my_plugin' as never)).toEqual({});
  });
});

describe('validation per row', () => {
  it('a bad env value names the variable, the value, the setting and the fix', () => {
    let err: unknown;
    try {
      resolveConfig({ env: { FSDP_SHARDING_STRATEGY: 'FULL_SHRAD', MEGATRON_LM_TP_DEGREE: 'two' }, configFile: false });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toBe(
      [
        'Invalid Accelerate configuration in the environment (2 problems):',
        '  - FSDP_SHARDING_STRATEGY="FULL_SHRAD" is not one of: FULL_SHARD, SHARD_GRAD_OP, NO_SHARD, HYBRID_SHARD, HYBRID_SHARD_ZERO2 (any case) (or 1..5) (did you mean FULL_SHARD?) (fsdp setting shardingStrategy). Set FSDP_SHARDING_STRATEGY to one of FULL_SHARD, SHARD_GRAD_OP, NO_SHARD, HYBRID_SHARD, HYBRID_SHARD_ZERO2, or unset it.',
        '  - MEGATRON_LM_TP_DEGREE="two" is not a whole number (megatron setting tpDegree). Set MEGATRON_LM_TP_DEGREE to a whole number, or unset it.',
      ].join('\n'),
    );
  });

  it('the launcher refuses bad section values before spawning, naming the flag or the file key', () => {
    let err: unknown;
    try {
      resolveLaunchArgs({ numProcesses: 2, useDeepspeed: true, extra: { zero_stage: 5, fsdp_sharding_strategy: 'FULL_SHRAD' } }, { env: noHome() });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LaunchError);
    expect((err as LaunchError).problems).toEqual([
      '--fsdp_sharding_strategy="FULL_SHRAD" is not one of: FULL_SHARD, SHARD_GRAD_OP, NO_SHARD, HYBRID_SHARD, HYBRID_SHARD_ZERO2 (any case) (or 1..5) (did you mean FULL_SHARD?) (fsdp setting shardingStrategy). Pass --fsdp_sharding_strategy one of FULL_SHARD, SHARD_GRAD_OP, NO_SHARD, HYBRID_SHARD, HYBRID_SHARD_ZERO2.',
      '--zero_stage=5 is not one of: 0, 1, 2, 3 (deepspeed setting zeroStage). Pass --zero_stage one of 0, 1, 2, 3.',
    ]);
  });
});
