import { describe, it, expect } from 'vitest';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { flattenedConfigKey, launchArgsFromFlags, parseTee, resolveLaunchArgs, type LaunchArgs } from '../../src/launch/args.js';
import { LAUNCH_FLAGS, launchFlag, LaunchError, parseLaunchFlagValue } from '../../src/launch/flags.js';

const fixture = (name: string) => join(import.meta.dirname, '../config/fixtures', name);
const noFile = { configFile: null } as const;
const resolve = (args: LaunchArgs) => resolveLaunchArgs(args, noFile);

function yamlFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'launch-args-'));
  const p = join(dir, 'config.yaml');
  writeFileSync(p, text);
  return p;
}

describe('launch flag validation (before anything is spawned)', () => {
  it('[B60] --cpu with --multi_gpu, and --multi_gpu with 1 process, are refused with the fix', () => {
    expect(() => resolve({ cpu: true, multiGpu: true })).toThrow(LaunchError);
    expect(() => resolve({ cpu: true, multiGpu: true })).toThrow(/only use one of --cpu, --multi_gpu.*got --cpu and --multi_gpu/);
    expect(() => resolve({ multiGpu: true, numProcesses: 1 })).toThrow(/--multi_gpu needs at least 2 processes, but --num_processes is 1/);
    expect(() => resolve({ useFsdp: true, extra: {} , useDeepspeed: true })).toThrow(/--use_deepspeed and --use_fsdp/);
    expect(resolve({ multiGpu: true, numProcesses: 2 }).paradigm).toBe('multi_gpu');
  });

  it('machine rank, machine count, divisibility, address and port are checked, naming flag and value', () => {
    // -1 typed on the command line is the flag's fault, not a config file's.
    expect(() => resolve({ numProcesses: -1 })).toThrow(/^--num_processes is -1; it must be at least 1/);
    expect(() => resolve({ numProcesses: 4, numMachines: 2, machineRank: 2, mainProcessIp: '10.0.0.1' })).toThrow(
      /--machine_rank is 2, but with 2 machines it must be 0..1/,
    );
    expect(() => resolve({ numProcesses: 3, numMachines: 2, mainProcessIp: '10.0.0.1' })).toThrow(
      /--num_processes 3 is not divisible by --num_machines 2/,
    );
    expect(() => resolve({ numProcesses: 4, numMachines: 2 })).toThrow(/spans 2 machines but --main_process_ip is not set/);
    expect(() => resolve({ numProcesses: 4, numMachines: 2, mainProcessIp: '10.0.0.1', mainProcessPort: 0 })).toThrow(
      /--main_process_port 0 picks a free port on this machine/,
    );
    expect(() => resolve({ numProcesses: 0 })).toThrow(/--num_processes is 0; it must be at least 1/);
    expect(() => resolve({ mainProcessPort: 70000 })).toThrow(/--main_process_port is 70000; a port is 0..65535/);
    const ok = resolve({ numProcesses: 4, numMachines: 2, machineRank: 1, mainProcessIp: '10.0.0.1', mainProcessPort: 1234 });
    expect(ok).toMatchObject({ numProcesses: 4, numMachines: 2, machineRank: 1, localProcesses: 2, mainProcessIp: '10.0.0.1', mainProcessPort: 1234 });
  });

  it('--max_restarts other than 0 is refused by name; --tee needs --log_dir; unsupported flags say so', () => {
    expect(() => resolve({ maxRestarts: 3 })).toThrow(/--max_restarts is 3, but accelerate-ts does not restart failed workers.*--max_restarts 0/);
    expect(resolve({ maxRestarts: 0 }).values.max_restarts).toBe(0);
    expect(() => resolve({ tee: '3' })).toThrow(/--tee 3 writes rank output to log files.*--log_dir/);
    expect(resolve({ tee: '0:3,1:1', logDir: '/tmp/x' }).tee).toBe('0:3,1:1');
    expect(() => resolve({ tpu: true })).toThrow(/--tpu is not supported by accelerate-ts: TPU launching is not supported/);
    expect(() => resolve({ extra: { mpirun_hostfile: 'hosts' } })).toThrow(/--mpirun_hostfile is not supported/);
    expect(() => resolve({ module: true, noPython: true })).toThrow(/--module and --no_python cannot be used together/);
  });

  it('values of the wrong kind name the flag, the value and what is allowed', () => {
    expect(() => resolve({ mixedPrecision: 'fp32' as never })).toThrow(/--mixed_precision got "fp32"; choose one of no, fp16, bf16, fp8/);
    expect(() => parseLaunchFlagValue(launchFlag('num_processes')!, 'two')).toThrow(/--num_processes got "two", which is not a whole number; pass e.g. --num_processes 2/);
    expect(() => parseLaunchFlagValue(launchFlag('fsdp_offload_params')!, 'maybe')).toThrow(/--fsdp_offload_params got "maybe"; pass true or false/);
    expect(() => parseLaunchFlagValue(launchFlag('dynamo_backend')!, 'inductr')).toThrow(/did you mean inductor/);
    expect(parseLaunchFlagValue(launchFlag('mixed_precision')!, 'BF16')).toBe('bf16');
    expect(parseLaunchFlagValue(launchFlag('fsdp_offload_params')!, 'True')).toBe(true);
    expect(parseLaunchFlagValue(launchFlag('monitor_interval')!, '0.5')).toBe(0.5);
  });

  it('--tee accepts one digit or per-rank pairs', () => {
    expect([0, 1, 2].map(parseTee('2'))).toEqual([2, 2, 2]);
    expect([0, 1, 2].map(parseTee('0:3,1:1'))).toEqual([3, 1, 0]);
    expect(() => parseTee('4')).toThrow(/--tee "4" is not valid/);
    expect(() => parseTee('a:1')).toThrow(/--tee "a:1" is not valid/);
  });

  it('defaults: 1 process, 1 machine, no precision, free port; a warning lists the defaults used (as Python)', () => {
    const r = resolveLaunchArgs({ script: 'train.js' }, noFile);
    expect(r).toMatchObject({ numProcesses: 1, numMachines: 1, machineRank: 0, mixedPrecision: 'no', cpu: false, paradigm: 'simple', mainProcessPort: undefined });
    expect(r.origins.num_processes).toEqual({ source: 'default', detail: '' });
    expect(r.warnings.join('\n')).toMatch(/had defaults used instead: `--num_processes` was set to a value of `1`/);
    const quiet = resolveLaunchArgs({ script: 'train.js', numProcesses: 2, numMachines: 1, mixedPrecision: 'no' }, noFile);
    expect(quiet.warnings).toEqual([]);
  });
});

describe('flags merged with the config file', () => {
  it('file values fill what the flags leave unset, flags win, and each value knows its origin', () => {
    const file = fixture('multi_cpu.yaml');
    const r = resolveLaunchArgs({ configFile: file, mixedPrecision: 'bf16' });
    expect(r.numProcesses).toBe(4);
    expect(r.origins.num_processes).toEqual({ source: 'config file', detail: `${file} (num_processes)` });
    expect(r.cpu).toBe(true);
    expect(r.origins.cpu.detail).toBe(`${file} (use_cpu)`);
    expect(r.mixedPrecision).toBe('bf16');
    expect(r.origins.mixed_precision).toEqual({ source: 'launch flag', detail: '--mixed_precision' });
    const flagWins = resolveLaunchArgs({ configFile: file, numProcesses: 2 });
    expect(flagWins.numProcesses).toBe(2);
    expect(flagWins.mixedPrecision).toBe('no');
  });

  it('FSDP config: paradigm from distributed_type and fsdp_config flattened into flag names (fsdp_ prefix added when missing)', () => {
    const file = fixture('fsdp2.yaml');
    const r = resolveLaunchArgs({ configFile: file });
    expect(r.paradigm).toBe('fsdp');
    expect(r.values).toMatchObject({
      fsdp_version: '2',
      fsdp_auto_wrap_policy: 'TRANSFORMER_BASED_WRAP',
      fsdp_state_dict_type: 'SHARDED_STATE_DICT',
      fsdp_reshard_after_forward: 'true',
      fsdp_offload_params: false,
      fsdp_sync_module_states: true, // flag default (not in the file)
    });
    expect(r.origins.fsdp_version).toEqual({ source: 'config file', detail: `${file} (fsdp_config.fsdp_version)` });
    expect(r.origins.fsdp_sync_module_states.source).toBe('default');
    const prefixed = resolveLaunchArgs({
      configFile: yamlFile('distributed_type: FSDP\nnum_processes: 2\nfsdp_config:\n  offload_params: true\n  sharding_strategy: SHARD_GRAD_OP\n'),
    });
    expect(prefixed.values.fsdp_offload_params).toBe(true);
    expect(prefixed.values.fsdp_sharding_strategy).toBe('SHARD_GRAD_OP');
    const flag = resolveLaunchArgs({ configFile: fixture('fsdp2.yaml'), extra: { fsdp_offload_params: true } });
    expect(flag.values.fsdp_offload_params).toBe(true);
    expect(flag.origins.fsdp_offload_params.source).toBe('launch flag');
  });

  it("Python's flattening rule for each section", () => {
    expect(flattenedConfigKey('fsdp_config', 'offload_params')).toBe('fsdp_offload_params');
    expect(flattenedConfigKey('fsdp_config', 'fsdp_version')).toBe('fsdp_version');
    expect(flattenedConfigKey('fp8_config', 'backend')).toBe('fp8_backend');
    expect(flattenedConfigKey('dynamo_config', 'dynamo_backend')).toBe('dynamo_backend');
    expect(flattenedConfigKey('dynamo_config', 'mode')).toBe('dynamo_mode');
    expect(flattenedConfigKey('deepspeed_config', 'zero_stage')).toBe('zero_stage');
  });

  it('a paradigm flag overrides the file distributed_type; GA comes from the file only for DeepSpeed', () => {
    const ds = yamlFile('distributed_type: DEEPSPEED\nnum_processes: 2\ndeepspeed_config:\n  gradient_accumulation_steps: 4\n  zero_stage: 3\n');
    const r = resolveLaunchArgs({ configFile: ds });
    expect(r.paradigm).toBe('deepspeed');
    expect(r.gradientAccumulationSteps).toBe(4);
    expect(r.values.zero_stage).toBe(3);
    const flagged = resolveLaunchArgs({ configFile: ds, useFsdp: true });
    expect(flagged.paradigm).toBe('fsdp');
    expect(flagged.gradientAccumulationSteps).toBeUndefined();
    expect(resolveLaunchArgs({ configFile: ds, useFsdp: true, gradientAccumulationSteps: 2 }).gradientAccumulationSteps).toBe(2);
  });

  it('num_processes -1 in the file must be given at launch', () => {
    const f = yamlFile('distributed_type: MULTI_CPU\n');
    expect(() => resolveLaunchArgs({ configFile: f })).toThrow(/has num_processes -1.*pass --num_processes/);
    expect(resolveLaunchArgs({ configFile: f, numProcesses: 3 }).numProcesses).toBe(3);
  });

  it('bad values in the file name the file and key; bad combos name their origin', () => {
    const f = yamlFile('distributed_type: MULTI_CPU\nnum_processes: 4\nnum_machines: 2\nmachine_rank: 5\nmain_process_ip: 10.0.0.1\n');
    expect(() => resolveLaunchArgs({ configFile: f })).toThrow(new RegExp(`${f.replace(/[/.]/g, '\\$&')} \\(machine_rank\\) is 5, but with 2 machines`));
    expect(() => resolveLaunchArgs({ configFile: yamlFile('distributed_type: XLA\nnum_processes: 8\n') })).toThrow(/distributed_type: XLA \(TPU\)/);
  });

  it('every problem of the file and the flags is reported in one error, not one per run', () => {
    const path = yamlFile(
      'compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nnum_processes: 2\nnum_machines: 1\nmachine_rank: 3\nmain_process_port: 99999\n',
    );
    let error: Error | undefined;
    try {
      resolveLaunchArgs({ configFile: path, module: true, noPython: true, tee: '3', maxRestarts: 2, numCpuThreadsPerProcess: 0 });
    } catch (e) {
      error = e as Error;
    }
    expect(error).toBeInstanceOf(LaunchError);
    const lines = error!.message.split('\n');
    expect(lines[0]).toBe('6 problems with the launch settings:');
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^  - --module and --no_python cannot be used together/),
      expect.stringContaining(`  - ${path} (machine_rank) is 3, but with 1 machine it must be 0`),
      expect.stringMatching(/\(main_process_port\) is 99999; a port is 0..65535/),
      expect.stringMatching(/^  - --max_restarts is 2, but accelerate-ts does not restart/),
      expect.stringMatching(/^  - --num_cpu_threads_per_process is 0; pass 1 or more/),
      expect.stringMatching(/^  - --tee 3 writes rank output to log files.*add --log_dir/),
    ]);
    // A file that fails its own checks: those problems come with the flags' ones.
    const broken = yamlFile('distributed_type: NO\nnum_procesess: 2\nmixed_precision: fp17\n');
    expect(() => resolveLaunchArgs({ configFile: broken, cpu: true, multiGpu: true })).toThrow(
      /^2 problems with the launch settings:\n  - You can only use one of --cpu, --multi_gpu[^\n]*\n  - Invalid Accelerate configuration in config file [^\n]* \(2 problems\):\n      - unknown key "num_procesess"[^\n]*\n      - key "mixed_precision" has value "fp17"/,
    );
  });

  it('the default config file is read from HF_HOME unless --cpu is passed (Python rule); --config_file always', () => {
    const home = mkdtempSync(join(tmpdir(), 'hf-home-'));
    mkdirSync(join(home, 'accelerate'));
    writeFileSync(join(home, 'accelerate', 'default_config.yaml'), 'distributed_type: MULTI_CPU\nnum_processes: 3\nmixed_precision: bf16\n');
    const env = { HF_HOME: home };
    const r = resolveLaunchArgs({}, { env });
    expect(r.numProcesses).toBe(3);
    expect(r.configFile?.path).toBe(join(home, 'accelerate', 'default_config.yaml'));
    const cpu = resolveLaunchArgs({ cpu: true }, { env });
    expect(cpu.configFile).toBeNull();
    expect(cpu.numProcesses).toBe(1);
    expect(resolveLaunchArgs({ cpu: true, configFile: fixture('multi_cpu.yaml') }, { env }).numProcesses).toBe(4);
  });
});

describe('launchArgsFromFlags', () => {
  it('maps snake_case flags to the typed fields and the rest to extra; unknown flags get a suggestion', () => {
    const a = launchArgsFromFlags({ num_processes: 2, multi_gpu: true, fsdp_offload_params: true, quiet: undefined }, 'train.ts', ['--lr', '1']);
    expect(a).toEqual({ script: 'train.ts', scriptArgs: ['--lr', '1'], numProcesses: 2, multiGpu: true, extra: { fsdp_offload_params: true } });
    expect(() => launchArgsFromFlags({ num_procesess: 2 })).toThrow(/--num_procesess is not a flag of accelerate launch; did you mean --num_processes\?/);
  });

  it('every flag of the table has a unique name, and extra refuses typed fields', () => {
    expect(new Set(LAUNCH_FLAGS.map((s) => s.name)).size).toBe(LAUNCH_FLAGS.length);
    expect(() => resolve({ extra: { num_processes: 2 } })).toThrow(/Pass num_processes as the numProcesses field/);
  });
});
