import { describe, it, expect } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveLaunchArgs, type LaunchArgs } from '../../src/launch/args.js';
import { buildLaunchPlan, rankEnvironment, resolveScriptCommand } from '../../src/launch/plan.js';
import { findFreePort, isPortInUse } from '../../src/launch/port.js';
import { detectWorld } from '../../src/state/environment.js';
import { resolveConfig } from '../../src/config/resolve.js';
import { createServer } from 'node:net';

// The repository root (tsx is installed in its node_modules), wherever the clone lives.
const repoRoot = join(import.meta.dirname, '../../../..');
const fixture = (name: string) => join(import.meta.dirname, '../config/fixtures', name);
const plan = (args: LaunchArgs, opts: Parameters<typeof buildLaunchPlan>[1] = {}) =>
  buildLaunchPlan(resolveLaunchArgs(args, { configFile: args.configFile ? undefined : null, env: {} }), { env: {}, cpuCount: 8, ...opts });

describe('buildLaunchPlan: per-rank environment', () => {
  it('machine 1 of 2 with 4 processes runs ranks 2 and 3 with the torchrun variables', () => {
    const p = plan({ numProcesses: 4, numMachines: 2, machineRank: 1, mainProcessIp: '10.1.2.3', mainProcessPort: 4567 });
    expect(p.ranks.map((r) => [r.rank, r.localRank])).toEqual([
      [2, 0],
      [3, 1],
    ]);
    expect(p.ranks[1].env).toMatchObject({
      RANK: '3',
      LOCAL_RANK: '1',
      WORLD_SIZE: '4',
      LOCAL_WORLD_SIZE: '2',
      GROUP_RANK: '1',
      NODE_RANK: '1',
      GROUP_WORLD_SIZE: '2',
      ROLE_RANK: '3',
      MASTER_ADDR: '10.1.2.3',
      MASTER_PORT: '4567',
      OMP_NUM_THREADS: '4',
    });
    // What core's PartialState reads back from it.
    for (const r of p.ranks) {
      const w = detectWorld(r.env, 8);
      expect(w).toMatchObject({ rank: r.rank, worldSize: 4, localRank: r.localRank, localWorldSize: 2, machineRank: 1, numMachines: 2, masterAddr: '10.1.2.3', masterPort: 4567, source: 'torchrun' });
    }
  });

  it('single machine: MASTER_ADDR 127.0.0.1 and the port chosen by the caller', () => {
    const p = plan({ numProcesses: 2 }, { port: 31234 });
    expect(p.masterAddr).toBe('127.0.0.1');
    expect(p.ranks.map((r) => [r.env.RANK, r.env.MASTER_ADDR, r.env.MASTER_PORT])).toEqual([
      ['0', '127.0.0.1', '31234'],
      ['1', '127.0.0.1', '31234'],
    ]);
  });

  it('OMP_NUM_THREADS: the flag, else the launcher\'s OMP_NUM_THREADS, else cores / local processes (at least 1)', () => {
    expect(plan({ numProcesses: 2 }, { cpuCount: 8 }).commonEnv.OMP_NUM_THREADS).toBe('4');
    expect(plan({ numProcesses: 3 }, { cpuCount: 8 }).commonEnv.OMP_NUM_THREADS).toBe('2');
    expect(plan({ numProcesses: 4 }, { cpuCount: 2 }).commonEnv.OMP_NUM_THREADS).toBe('1');
    expect(plan({ numProcesses: 2 }, { cpuCount: 8, env: { OMP_NUM_THREADS: '3' } }).commonEnv.OMP_NUM_THREADS).toBe('3');
    expect(plan({ numProcesses: 2, numCpuThreadsPerProcess: 5 }, { cpuCount: 8, env: { OMP_NUM_THREADS: '3' } }).threadsPerProcess).toBe(5);
  });

  it('Accelerate settings are exported when set, and removed from the inherited environment when at their default', () => {
    const p = plan({ numProcesses: 2, mixedPrecision: 'bf16', cpu: true, debug: true, gradientAccumulationSteps: 4 });
    expect(p.commonEnv).toMatchObject({
      ACCELERATE_MIXED_PRECISION: 'bf16',
      ACCELERATE_USE_CPU: 'true',
      ACCELERATE_DEBUG_MODE: 'true',
      ACCELERATE_GRADIENT_ACCUMULATION_STEPS: '4',
      KMP_AFFINITY: 'granularity=fine,compact,1,0',
      KMP_BLOCKTIME: '1',
    });
    const d = plan({ numProcesses: 2 });
    for (const k of ['ACCELERATE_MIXED_PRECISION', 'ACCELERATE_USE_CPU', 'ACCELERATE_DEBUG_MODE', 'ACCELERATE_GRADIENT_ACCUMULATION_STEPS']) {
      expect(d.commonEnv[k]).toBeUndefined();
      expect(d.unsetEnv).toContain(k);
    }
    const env = rankEnvironment(d, d.ranks[0], { ACCELERATE_MIXED_PRECISION: 'fp16', PATH: '/bin', RANK: '7' });
    expect(env.ACCELERATE_MIXED_PRECISION).toBeUndefined();
    expect(env.PATH).toBe('/bin');
    expect(env.RANK).toBe('0');
  });

  it("the ranks' provenance report names the launch flag or the config file, not just env", () => {
    const flagged = plan({ numProcesses: 2, mixedPrecision: 'bf16' }, { port: 29999 });
    const child = resolveConfig({ env: flagged.ranks[1].env, configFile: false });
    expect(child.mixedPrecision).toEqual({ value: 'bf16', source: 'launch flag', detail: '--mixed_precision (via ACCELERATE_MIXED_PRECISION)' });
    expect(child.numProcesses).toEqual({ value: 2, source: 'launch flag', detail: '--num_processes (via WORLD_SIZE)' });
    expect(child.mainProcessPort.value).toBe(29999);
    expect(child.mainProcessPort.source).toBe('default');

    const file = fixture('multi_cpu.yaml');
    const fromFile = plan({ configFile: file, mixedPrecision: 'fp16' });
    expect(fromFile.commonEnv.ACCELERATE_CONFIG_FILE).toBe(file);
    const c2 = resolveConfig({ env: fromFile.ranks[0].env, configFile: false });
    expect(c2.cpu).toEqual({ value: true, source: 'config file', detail: `${file} (use_cpu) (via ACCELERATE_USE_CPU)` });
    expect(c2.numProcesses.source).toBe('config file');
    expect(c2.mixedPrecision.source).toBe('launch flag');
  });

  it('FSDP, DeepSpeed, Megatron-LM, parallelism and FP8 settings become the §10 variables', () => {
    const fsdp = plan({ numProcesses: 2, useFsdp: true, extra: { fsdp_offload_params: true, fsdp_auto_wrap_policy: 'SIZE_BASED_WRAP' } });
    expect(fsdp.commonEnv).toMatchObject({
      ACCELERATE_USE_FSDP: 'true',
      FSDP_VERSION: '1',
      FSDP_SHARDING_STRATEGY: 'FULL_SHARD',
      FSDP_RESHARD_AFTER_FORWARD: 'true',
      FSDP_OFFLOAD_PARAMS: 'true',
      FSDP_MIN_NUM_PARAMS: '100000000',
      FSDP_AUTO_WRAP_POLICY: 'SIZE_BASED_WRAP',
      FSDP_FORWARD_PREFETCH: 'false',
      FSDP_USE_ORIG_PARAMS: 'true',
      FSDP_CPU_RAM_EFFICIENT_LOADING: 'true',
      FSDP_SYNC_MODULE_STATES: 'true',
      FSDP_ACTIVATION_CHECKPOINTING: 'false',
    });
    expect(fsdp.commonEnv.FSDP_STATE_DICT_TYPE).toBeUndefined();
    expect(() => plan({ numProcesses: 2, useFsdp: true, extra: { fsdp_sync_module_states: false } })).toThrow(/needs --fsdp_sync_module_states true/);

    const ds = plan({ numProcesses: 2, useDeepspeed: true, gradientAccumulationSteps: 2, extra: { zero_stage: 3, offload_optimizer_device: 'CPU', zero3_init_flag: true } });
    expect(ds.commonEnv).toMatchObject({
      ACCELERATE_USE_DEEPSPEED: 'true',
      ACCELERATE_DEEPSPEED_ZERO_STAGE: '3',
      ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE: 'cpu',
      ACCELERATE_DEEPSPEED_ZERO3_INIT: 'true',
      ACCELERATE_GRADIENT_ACCUMULATION_STEPS: '2',
    });

    const mega = plan({ numProcesses: 2, useMegatronLm: true, extra: { megatron_lm_tp_degree: 2 } });
    expect(mega.commonEnv).toMatchObject({ ACCELERATE_USE_MEGATRON_LM: 'true', MEGATRON_LM_TP_DEGREE: '2', MEGATRON_LM_PP_DEGREE: '1', MEGATRON_LM_GRADIENT_CLIPPING: '1' });

    const par = plan({ numProcesses: 4, useFsdp: true, useParallelismConfig: true, extra: { fsdp_version: '2', parallelism_config_dp_shard_size: 2, parallelism_config_tp_size: 2 } });
    expect(par.commonEnv).toMatchObject({ ACCELERATE_USE_PARALLELISM_CONFIG: 'true', PARALLELISM_CONFIG_DP_SHARD_SIZE: '2', PARALLELISM_CONFIG_TP_SIZE: '2', PARALLELISM_CONFIG_CP_SIZE: '1' });
    expect(() => plan({ numProcesses: 2, useParallelismConfig: true })).toThrow(/--use_parallelism_config needs FSDP version 2/);

    const fp8 = plan({ numProcesses: 2, mixedPrecision: 'fp8', extra: { fp8_backend: 'te', fp8_override_linear_precision: 'true,false,true' } });
    expect(fp8.commonEnv).toMatchObject({
      ACCELERATE_MIXED_PRECISION: 'fp8',
      ACCELERATE_FP8_BACKEND: 'te',
      ACCELERATE_FP8_FORMAT: 'HYBRID',
      ACCELERATE_FP8_AMAX_HISTORY_LEN: '1024',
      ACCELERATE_FP8_OVERRIDE_FPROP: 'true',
      ACCELERATE_FP8_OVERRIDE_DGRAD: 'false',
      ACCELERATE_FP8_OVERRIDE_WGRAD: 'true',
    });
    expect(plan({ numProcesses: 2, extra: { fp8_backend: 'te' } }).commonEnv.ACCELERATE_FP8_BACKEND).toBeUndefined();
  });

  it('gpu ids, dynamo and CPU affinity', () => {
    const p = plan({ numProcesses: 2, gpuIds: '0,1', dynamoBackend: 'inductor', enableCpuAffinity: true });
    expect(p.commonEnv).toMatchObject({
      CUDA_VISIBLE_DEVICES: '0,1',
      ACCELERATE_DYNAMO_BACKEND: 'INDUCTOR',
      ACCELERATE_DYNAMO_MODE: 'default',
      ACCELERATE_DYNAMO_USE_FULLGRAPH: 'false',
      ACCELERATE_CPU_AFFINITY: '1',
    });
    expect(plan({ numProcesses: 2 }).commonEnv.CUDA_VISIBLE_DEVICES).toBeUndefined();
  });
});

describe('resolveScriptCommand', () => {
  const dir = mkdtempSync(join(tmpdir(), 'launch-cmd-'));
  for (const f of ['a.ts', 'b.mjs', 'c.js', 'd.py', 'e.mts']) writeFileSync(join(dir, f), '');

  it('.js/.mjs run with node, .ts/.mts with node --import tsx, other files need --no_python', () => {
    const js = resolveScriptCommand('b.mjs', ['--x', '1'], {}, { cwd: dir, guard: false });
    expect(js).toEqual({ command: process.execPath, args: [join(dir, 'b.mjs'), '--x', '1'], runner: 'node' });
    const ts = resolveScriptCommand(join(dir, 'a.ts'), [], {}, { cwd: repoRoot, guard: false });
    expect(ts.runner).toBe('node + tsx');
    expect(ts.args[0]).toBe('--import');
    expect(ts.args[1]).toMatch(/^file:\/\/.*\/tsx\/dist\/loader\.mjs$/);
    expect(ts.args[2]).toBe(join(dir, 'a.ts'));
    expect(resolveScriptCommand('e.mts', [], {}, { cwd: dir, guard: false }).runner).toBe('node + tsx');
    expect(() => resolveScriptCommand('d.py', [], {}, { cwd: dir })).toThrow(/runs .ts, .mts, .js or .mjs scripts; "d.py" is none of them.*--no_python/);
    expect(resolveScriptCommand('python3', ['d.py'], { noPython: true }, { cwd: dir })).toEqual({ command: 'python3', args: ['d.py'], runner: 'program' });
  });

  it('a missing script is named with where it was looked for; --module resolves from the working directory', () => {
    expect(() => resolveScriptCommand('nope.ts', [], {}, { cwd: dir })).toThrow(new RegExp(`"nope.ts" does not exist \\(looked for ${join(dir, 'nope.ts').replace(/[/.]/g, '\\$&')}\\)`));
    const mod = resolveScriptCommand('tsx', ['a'], { module: true }, { cwd: repoRoot, guard: false });
    expect(mod.args.slice(-2)).toEqual([join(repoRoot, 'node_modules/tsx/dist/loader.mjs'), 'a']);
    expect(() => resolveScriptCommand('no-such-pkg-xyz', [], { module: true }, { cwd: dir })).toThrow(/--module: cannot resolve "no-such-pkg-xyz"/);
  });

  it('node ranks load the launcher guard unless disabled', () => {
    const withGuard = resolveScriptCommand('e.mts', [], {}, { cwd: dir });
    expect(withGuard.args.filter((a) => a.includes('child-guard'))).toHaveLength(1);
  });
});

describe('ports', () => {
  it('findFreePort returns a port nobody listens on; isPortInUse sees a listener', async () => {
    const port = await findFreePort();
    expect(port).toBeGreaterThan(0);
    expect(await isPortInUse(port)).toBe(false);
    const server = createServer();
    await new Promise<void>((r) => server.listen(port, r));
    try {
      expect(await isPortInUse(port)).toBe(true);
    } finally {
      server.close();
    }
  });
});
