// FSDP settings -> FsdpPlan: Accelerate's FullyShardedDataParallelPlugin rules (spec §6,
// behaviours 62–63), the world-size checks, and errors that name the field as the user wrote it.
import { describe, expect, it } from 'vitest';
import { resolveSections, type SectionLayers } from '@accelerate/core/internal';
import {
  FsdpConfigError,
  parseDtypeName,
  resolveFsdpPlan,
  validateFsdpLaunchConfig,
  type FsdpOptions,
  type FsdpSection,
  type ResolveFsdpPlanInput,
} from '../src/options.js';

const FILE = '/cfg/default_config.yaml';

/** The fsdp section as a rank resolves it from these layers. */
function section(layers: { file?: Record<string, unknown>; env?: Record<string, string>; flags?: Record<string, unknown>; launcherDefaults?: boolean }): FsdpSection {
  const l: SectionLayers = {
    env: layers.env ?? {},
    launchFlags: layers.flags,
    file: layers.file ? { path: FILE, config: { fsdp_config: layers.file } } : null,
    launcherDefaults: layers.launcherDefaults,
  };
  const { sections, problems } = resolveSections(l);
  expect(problems).toEqual([]);
  return sections.fsdp;
}

function plan(input: Partial<ResolveFsdpPlanInput> & { user?: FsdpOptions }) {
  return resolveFsdpPlan({ numProcesses: 2, ...input });
}

function errorOf(fn: () => unknown): FsdpConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FsdpConfigError);
    return e as FsdpConfigError;
  }
  throw new Error('expected an FsdpConfigError');
}

describe('defaults', () => {
  it('no settings: FSDP1, FULL_SHARD over the world, NO_WRAP, FULL_STATE_DICT', () => {
    const p = plan({ numProcesses: 4 });
    expect(p).toMatchObject({
      version: 1,
      shardingStrategy: 'FULL_SHARD',
      reshardAfterForward: true,
      shardGroupSize: 4,
      replicaGroupCount: 1,
      backwardPrefetch: 'NO_PREFETCH',
      forwardPrefetch: false,
      autoWrap: { kind: 'none' },
      cpuOffload: false,
      activationCheckpointing: false,
      mixedPrecision: undefined,
      stateDictType: 'FULL_STATE_DICT',
      limitAllGathers: true,
      warnings: [],
    });
    expect(p.isIgnored('a')).toBe(false);
  });

  it('the launcher\'s exported defaults count as defaults, not as settings', () => {
    const s = section({ launcherDefaults: true });
    const p = plan({ section: s, numProcesses: 2 });
    expect(p.shardingStrategy).toBe('FULL_SHARD');
    expect(p.autoWrap).toEqual({ kind: 'none' });
  });
});

describe('[B62] sharding strategy names and numbers', () => {
  const names = ['FULL_SHARD', 'SHARD_GRAD_OP', 'NO_SHARD', 'HYBRID_SHARD', 'HYBRID_SHARD_ZERO2'] as const;
  it.each(names.map((n, i) => [n, i + 1] as const))('%s = %d from the file, FSDP_SHARDING_STRATEGY (name or number), and code', (name, number) => {
    const opts = { numProcesses: 4, localWorldSize: 2 };
    const fromFile = plan({ ...opts, section: section({ file: { fsdp_sharding_strategy: name } }) });
    const fromEnvName = plan({ ...opts, section: section({ env: { FSDP_SHARDING_STRATEGY: name.toLowerCase() } }) });
    const fromEnvNumber = plan({ ...opts, section: section({ env: { FSDP_SHARDING_STRATEGY: String(number) } }) });
    const fromFileNumber = plan({ ...opts, section: section({ file: { fsdp_sharding_strategy: number } }) });
    const fromCode = plan({ ...opts, user: { shardingStrategy: number as 1 } });
    for (const p of [fromFile, fromEnvName, fromEnvNumber, fromFileNumber, fromCode]) expect(p.shardingStrategy).toBe(name);
    expect(fromFile.reshardAfterForward).toBe(name === 'FULL_SHARD' || name === 'HYBRID_SHARD');
    expect(fromFile.shardGroupSize).toBe(name === 'NO_SHARD' ? 1 : name.startsWith('HYBRID') ? 2 : 4);
    expect(fromFile.replicaGroupCount).toBe(name === 'NO_SHARD' ? 4 : name.startsWith('HYBRID') ? 2 : 1);
  });

  it('code wins over the file; FSDP1 takes a strategy name in fsdp_reshard_after_forward', () => {
    const s = section({ file: { fsdp_sharding_strategy: 'SHARD_GRAD_OP' } });
    expect(plan({ section: s, user: { shardingStrategy: 'NO_SHARD' } }).shardingStrategy).toBe('NO_SHARD');
    expect(plan({ section: section({ file: { fsdp_reshard_after_forward: 'SHARD_GRAD_OP' } }) }).shardingStrategy).toBe('SHARD_GRAD_OP');
  });

  it('an unknown name in code names the field and the allowed values', () => {
    const e = errorOf(() => plan({ user: { shardingStrategy: 'FULL' as 'FULL_SHARD' } }));
    expect(e.message).toContain('shardingStrategy="FULL" (in fsdp({...}))');
    expect(e.message).toContain('FULL_SHARD, SHARD_GRAD_OP, NO_SHARD, HYBRID_SHARD, HYBRID_SHARD_ZERO2');
  });

  it('FSDP1: a boolean reshardAfterForward is refused, naming the field as written', () => {
    const e = errorOf(() => plan({ section: section({ env: { FSDP_RESHARD_AFTER_FORWARD: 'false' } }) }));
    expect(e.message).toContain('FSDP_RESHARD_AFTER_FORWARD=false (environment) is a boolean, which FSDP version 1 does not take');
    expect(e.message).toContain('Set FSDP_RESHARD_AFTER_FORWARD=SHARD_GRAD_OP, or use FSDP2 (set fsdp_version: 2 in the config file or pass fsdpVersion: 2 to fsdp({...}))');
  });
});

describe('[B62] FSDP2 rules', () => {
  it('reshard_after_forward is a bool, default true (FULL_SHARD); false -> SHARD_GRAD_OP', () => {
    expect(plan({ user: { fsdpVersion: 2 } })).toMatchObject({ version: 2, shardingStrategy: 'FULL_SHARD', reshardAfterForward: true, stateDictType: 'SHARDED_STATE_DICT' });
    const p = plan({ section: section({ file: { fsdp_version: 2, fsdp_reshard_after_forward: false } }) });
    expect(p).toMatchObject({ version: 2, shardingStrategy: 'SHARD_GRAD_OP', reshardAfterForward: false });
  });

  it('a strategy name in reshard_after_forward is an error', () => {
    const e = errorOf(() => plan({ section: section({ file: { fsdp_version: 2, fsdp_reshard_after_forward: 'FULL_SHARD' } }) }));
    expect(e.message).toContain(`fsdp_config.fsdp_reshard_after_forward="FULL_SHARD" (in ${FILE}) is a strategy name, but FSDP version 2 takes a boolean`);
    expect(e.message).toContain(`Set fsdp_reshard_after_forward: true in ${FILE}`);
  });

  it('backward_prefetch must be unset (NO_PREFETCH / null are fine)', () => {
    const e = errorOf(() => plan({ section: section({ flags: { fsdp_version: 2, fsdp_backward_prefetch: 'BACKWARD_PRE' } }) }));
    expect(e.message).toContain('--fsdp_backward_prefetch="BACKWARD_PRE" (accelerate launch): FSDP version 2 has no backward prefetch setting');
    expect(e.message).toContain('Drop --fsdp_backward_prefetch');
    expect(plan({ user: { fsdpVersion: 2, backwardPrefetch: null } }).backwardPrefetch).toBe('NO_PREFETCH');
    expect(plan({ user: { fsdpVersion: 2, backwardPrefetch: 'NO_PREFETCH' } }).backwardPrefetch).toBe('NO_PREFETCH');
    expect(plan({ user: { backwardPrefetch: 'BACKWARD_POST' } }).backwardPrefetch).toBe('BACKWARD_POST'); // FSDP1
  });

  it('forward_prefetch true is an error; LOCAL_STATE_DICT is an error', () => {
    const e = errorOf(() => plan({ user: { fsdpVersion: 2, forwardPrefetch: true, stateDictType: 'LOCAL_STATE_DICT' } }));
    expect(e.problems).toHaveLength(2);
    expect(e.message).toContain('forwardPrefetch=true (in fsdp({...})): forward prefetch is not implemented in FSDP version 2. Remove forwardPrefetch from fsdp({...})');
    expect(e.message).toContain('stateDictType="LOCAL_STATE_DICT" (in fsdp({...})): FSDP version 2 does not support LOCAL_STATE_DICT');
    expect(plan({ user: { forwardPrefetch: true } }).forwardPrefetch).toBe(true); // FSDP1
    // The launcher's exported default (false) is no setting.
    expect(plan({ section: section({ launcherDefaults: true, flags: { fsdp_version: 2 } }) }).forwardPrefetch).toBe(false);
  });

  it('state dict defaults: FULL (v1), SHARDED (v2); an explicit FULL_STATE_DICT is kept in v2', () => {
    expect(plan({}).stateDictType).toBe('FULL_STATE_DICT');
    expect(plan({ user: { fsdpVersion: 2 } }).stateDictType).toBe('SHARDED_STATE_DICT');
    expect(plan({ user: { fsdpVersion: 2, stateDictType: 'FULL_STATE_DICT' } }).stateDictType).toBe('FULL_STATE_DICT');
  });

  it('an explicit shardingStrategy is honoured in v2; a contradicting reshardAfterForward names both', () => {
    expect(plan({ user: { fsdpVersion: 2, shardingStrategy: 'NO_SHARD' } }).shardingStrategy).toBe('NO_SHARD');
    const e = errorOf(() => plan({ user: { fsdpVersion: 2, shardingStrategy: 'FULL_SHARD', reshardAfterForward: false } }));
    expect(e.message).toContain('shardingStrategy="FULL_SHARD"');
    expect(e.message).toContain('reshardAfterForward=false');
  });
});

describe('world size', () => {
  it('a sharding strategy with one process asks for several processes or NO_SHARD', () => {
    const e = errorOf(() => plan({ numProcesses: 1, section: section({ env: { FSDP_SHARDING_STRATEGY: 'FULL_SHARD' } }) }));
    expect(e.message).toContain('FSDP_SHARDING_STRATEGY="FULL_SHARD" (environment) shards parameters across processes, but this run has 1 process');
    expect(e.message).toContain('accelerate launch --num_processes 2');
    expect(e.message).toContain('set FSDP_SHARDING_STRATEGY=NO_SHARD');
    const d = errorOf(() => plan({ numProcesses: 1 }));
    expect(d.message).toContain('the sharding strategy FULL_SHARD (the default)');
    expect(plan({ numProcesses: 1, user: { shardingStrategy: 'NO_SHARD' } })).toMatchObject({ shardGroupSize: 1, replicaGroupCount: 1 });
  });

  it('HYBRID_SHARD: shard group = the processes of one machine by default, or shardGroupSize / dp_shard_size', () => {
    expect(plan({ numProcesses: 4, localWorldSize: 2, user: { shardingStrategy: 'HYBRID_SHARD' } })).toMatchObject({ shardGroupSize: 2, replicaGroupCount: 2, reshardAfterForward: true });
    expect(plan({ numProcesses: 8, localWorldSize: 8, user: { shardingStrategy: 'HYBRID_SHARD_ZERO2', shardGroupSize: 4 } })).toMatchObject({ shardGroupSize: 4, replicaGroupCount: 2, reshardAfterForward: false });
    // FSDP2: a shard group below the world makes it hybrid.
    expect(plan({ numProcesses: 4, user: { fsdpVersion: 2 }, dpShardSize: 2 })).toMatchObject({ shardingStrategy: 'HYBRID_SHARD', shardGroupSize: 2 });
    expect(plan({ numProcesses: 4, user: { fsdpVersion: 2, reshardAfterForward: false, shardGroupSize: 2 } }).shardingStrategy).toBe('HYBRID_SHARD_ZERO2');
    expect(plan({ numProcesses: 4, user: { fsdpVersion: 2 }, dpShardSize: 4 }).shardingStrategy).toBe('FULL_SHARD');
  });

  it('HYBRID_SHARD with a group that does not divide the world, or that is 1 or the whole world: error naming both numbers', () => {
    const notDivisible = errorOf(() => plan({ numProcesses: 6, user: { shardingStrategy: 'HYBRID_SHARD', shardGroupSize: 4 } }));
    expect(notDivisible.message).toContain('the world size 6 is not divisible by shardGroupSize=4');
    const whole = errorOf(() => plan({ numProcesses: 4, localWorldSize: 4, section: section({ file: { fsdp_sharding_strategy: 'HYBRID_SHARD' } }) }));
    expect(whole.message).toContain(`fsdp_config.fsdp_sharding_strategy="HYBRID_SHARD" (in ${FILE})`);
    expect(whole.message).toContain('the 4 processes of one machine (LOCAL_WORLD_SIZE) and the world size is 4');
    expect(whole.message).toContain('replicates nothing');
    const one = errorOf(() => plan({ numProcesses: 4, user: { shardingStrategy: 'HYBRID_SHARD', shardGroupSize: 1 } }));
    expect(one.message).toContain('shardGroupSize=1 (in fsdp({...})) and the world size is 4: groups of 1 shard nothing');
  });

  it('an explicit FULL_SHARD with a smaller shard group points to HYBRID_SHARD', () => {
    const e = errorOf(() => plan({ numProcesses: 4, user: { shardingStrategy: 'FULL_SHARD', shardGroupSize: 2 } }));
    expect(e.message).toContain('use HYBRID_SHARD');
  });
});

describe('[B63] auto-wrap policies', () => {
  it('TRANSFORMER_BASED_WRAP takes the class names (comma list from the file / env, list in code)', () => {
    const s = section({ file: { fsdp_auto_wrap_policy: 'TRANSFORMER_BASED_WRAP', fsdp_transformer_layer_cls_to_wrap: 'Block, DecoderLayer' } });
    expect(plan({ section: s }).autoWrap).toEqual({ kind: 'transformer', classes: ['Block', 'DecoderLayer'] });
    const e = section({ env: { FSDP_AUTO_WRAP_POLICY: 'transformer_based_wrap', FSDP_TRANSFORMER_CLS_TO_WRAP: 'Block' } });
    expect(plan({ section: e }).autoWrap).toEqual({ kind: 'transformer', classes: ['Block'] });
    expect(plan({ user: { autoWrapPolicy: { transformerLayerClasses: ['X'] } } }).autoWrap).toEqual({ kind: 'transformer', classes: ['X'] });
    expect(plan({ user: { autoWrapPolicy: 'TRANSFORMER_BASED_WRAP', transformerLayerClsToWrap: ['A', 'B'] } }).autoWrap).toEqual({ kind: 'transformer', classes: ['A', 'B'] });
  });

  it('SIZE_BASED_WRAP with min_num_params 0 wraps nothing by size', () => {
    expect(plan({ section: section({ file: { fsdp_auto_wrap_policy: 'SIZE_BASED_WRAP', fsdp_min_num_params: 0 } }) }).autoWrap).toEqual({ kind: 'none' });
    expect(plan({ user: { autoWrapPolicy: { minNumParams: 0 } } }).autoWrap).toEqual({ kind: 'none' });
    expect(plan({ user: { autoWrapPolicy: 'SIZE_BASED_WRAP', minNumParams: 1000 } }).autoWrap).toEqual({ kind: 'size', minNumParams: 1000 });
    expect(plan({ section: section({ env: { FSDP_AUTO_WRAP_POLICY: 'SIZE_BASED_WRAP' } }) }).autoWrap).toEqual({ kind: 'size', minNumParams: 100_000_000 });
  });

  it('a function policy is kept; class names without TRANSFORMER_BASED_WRAP are ignored with a warning', () => {
    const fn = () => true;
    expect(plan({ user: { autoWrapPolicy: fn } }).autoWrap).toEqual({ kind: 'function', fn });
    const p = plan({ section: section({ file: { fsdp_transformer_layer_cls_to_wrap: 'Block' } }) });
    expect(p.autoWrap).toEqual({ kind: 'none' });
    expect(p.warnings[0]).toContain(`fsdp_config.fsdp_transformer_layer_cls_to_wrap="Block" (in ${FILE}) is ignored`);
  });

  it('a negative min_num_params is an error naming it', () => {
    const e = errorOf(() => plan({ user: { autoWrapPolicy: 'SIZE_BASED_WRAP', minNumParams: -1 } }));
    expect(e.message).toContain('minNumParams=-1 (in fsdp({...})) must be a whole number of parameters');
  });
});

describe('RAM-efficient loading and module-state sync', () => {
  it('explicit cpu_ram_efficient_loading with sync_module_states false forces sync true, with a warning (Accelerate\'s plugin)', () => {
    const p = plan({ user: { cpuRamEfficientLoading: true, syncModuleStates: false } });
    expect(p).toMatchObject({ cpuRamEfficientLoading: true, syncModuleStates: true });
    expect(p.warnings[0]).toContain('cpuRamEfficientLoading=true (in fsdp({...})) needs module states synchronised from rank 0');
    expect(p.warnings[0]).toContain('syncModuleStates=false');
  });

  it('RAM-efficient loading as a mere default gives way to an explicit sync_module_states false', () => {
    const p = plan({ section: section({ file: { fsdp_sync_module_states: false } }) });
    expect(p).toMatchObject({ cpuRamEfficientLoading: false, syncModuleStates: false, warnings: [] });
  });
});

describe('mixed precision', () => {
  it('fp16 / bf16 -> the dtype for params, reductions and buffers; fp32 none; the Accelerator\'s precision when no policy', () => {
    expect(plan({ user: { mixedPrecisionPolicy: 'bf16' } }).mixedPrecision).toEqual({ paramDtype: 'bfloat16', reduceDtype: 'bfloat16', bufferDtype: 'bfloat16' });
    expect(plan({ user: { mixedPrecisionPolicy: 'fp16' } }).mixedPrecision).toEqual({ paramDtype: 'float16', reduceDtype: 'float16', bufferDtype: 'float16' });
    expect(plan({ user: { mixedPrecisionPolicy: 'fp32' } }).mixedPrecision).toBeUndefined();
    expect(plan({ mixedPrecision: 'bf16' }).mixedPrecision?.paramDtype).toBe('bfloat16');
    expect(plan({ mixedPrecision: 'bf16', user: { mixedPrecisionPolicy: 'fp32' } }).mixedPrecision).toBeUndefined();
    expect(plan({ mixedPrecision: 'no' }).mixedPrecision).toBeUndefined();
  });

  it('dicts take dtype names as torch spells them', () => {
    expect(plan({ user: { mixedPrecisionPolicy: { paramDtype: 'torch.bfloat16', reduceDtype: 'fp32' } } }).mixedPrecision).toEqual({
      paramDtype: 'bfloat16',
      reduceDtype: 'float32',
      bufferDtype: 'float32',
    });
    const snake = { param_dtype: 'bf16', buffer_dtype: 'bfloat16', output_dtype: 'float32' } as unknown as { paramDtype: string };
    expect(plan({ user: { mixedPrecisionPolicy: snake } }).mixedPrecision).toEqual({ paramDtype: 'bfloat16', reduceDtype: 'bfloat16', bufferDtype: 'bfloat16', outputDtype: 'float32' });
    for (const [name, d] of [['half', 'float16'], ['torch.float16', 'float16'], ['float', 'float32'], ['BF16', 'bfloat16']] as const) expect(parseDtypeName(name)).toBe(d);
    expect(errorOf(() => plan({ user: { mixedPrecisionPolicy: { paramDtype: 'int8' } } })).message).toContain('mixedPrecisionPolicy.paramDtype="int8" (in fsdp({...})) is not a floating-point dtype');
  });

  it('fp8 is refused with the reason', () => {
    expect(errorOf(() => plan({ user: { mixedPrecisionPolicy: 'fp8' } })).message).toContain('FP8 is not supported as an FSDP mixed-precision policy here');
  });
});

describe('ignored modules', () => {
  it('a list of names matches exactly; a regex (code or file) must match the whole name', () => {
    const list = plan({ user: { ignoredModules: ['encoder.0', 'head'] } }).isIgnored;
    expect([list('encoder.0'), list('head'), list('encoder.01'), list('encoder')]).toEqual([true, true, false, false]);
    const re = plan({ user: { ignoredModules: /encoder\.\d/ } }).isIgnored;
    expect([re('encoder.1'), re('x.encoder.1'), re('encoder.1.linear')]).toEqual([true, false, false]);
    const file = plan({ section: section({ file: { fsdp_ignored_modules: '.*norm.*' } }) }).isIgnored;
    expect([file('layers.0.norm1'), file('layers.0.linear')]).toEqual([true, false]);
  });

  it('an invalid regex names the field', () => {
    const e = errorOf(() => plan({ section: section({ env: { FSDP_IGNORED_MODULES: 'enc(' } }) }));
    expect(e.message).toContain('FSDP_IGNORED_MODULES="enc(" (environment) is not a valid regular expression');
  });
});

describe('errors', () => {
  it('collects every problem in one error', () => {
    const e = errorOf(() => plan({ numProcesses: 1, user: { fsdpVersion: 2, backwardPrefetch: 'BACKWARD_PRE', forwardPrefetch: true } }));
    expect(e.problems.length).toBe(3);
    expect(e.message).toMatch(/^FSDP settings have 3 problems:\n {2}- /);
  });

  it('a launch flag exported to the ranks is named as the flag', () => {
    const { sections } = resolveSections({
      env: { FSDP_VERSION: '2', FSDP_BACKWARD_PREFETCH: 'BACKWARD_PRE' },
      exported: {
        FSDP_VERSION: { value: '2', source: 'launch flag', detail: '--fsdp_version' },
        FSDP_BACKWARD_PREFETCH: { value: 'BACKWARD_PRE', source: 'launch flag', detail: '--fsdp_backward_prefetch' },
      },
    });
    const e = errorOf(() => plan({ section: sections.fsdp }));
    expect(e.message).toContain('--fsdp_backward_prefetch="BACKWARD_PRE" (accelerate launch)');
  });
});

describe('validateFsdpLaunchConfig', () => {
  it('returns the problems of the launch\'s section (empty when fine)', () => {
    const ok = section({ launcherDefaults: true, flags: { fsdp_version: 2 } });
    expect(validateFsdpLaunchConfig({ section: ok, numProcesses: 2, localWorldSize: 2 })).toEqual([]);
    const bad = section({ launcherDefaults: true, file: { fsdp_version: 2, fsdp_state_dict_type: 'LOCAL_STATE_DICT' } });
    const problems = validateFsdpLaunchConfig({ section: bad, numProcesses: 2 });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(`fsdp_config.fsdp_state_dict_type="LOCAL_STATE_DICT" (in ${FILE}): FSDP version 2 does not support LOCAL_STATE_DICT`);
  });
});
