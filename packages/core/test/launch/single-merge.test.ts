// Issue 12, point 4: one resolver serves the launcher and the ranks. The launcher merges the core
// settings once (launch flags > config file > defaults) with the rows resolveConfig uses, exports
// each value with its source, and a rank reads them back without parsing the config file again.
import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveLaunchArgs } from '../../src/launch/args.js';
import { buildLaunchPlan, rankEnvironment } from '../../src/launch/plan.js';
import { runLaunch } from '../../src/launch/run.js';
import { resolveConfig, type ResolvedSetting, type ResolvedValues } from '../../src/config/resolve.js';
import { sink } from './helpers.js';

const FILE_TEXT =
  'compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nmixed_precision: fp16\nnum_processes: 4\nnum_machines: 1\nmachine_rank: 0\nuse_cpu: true\n';
/** The file after the edit: it now sets what the launcher left at the default (debug, dynamo), which a rank must not pick up. */
const EDITED =
  'compute_environment: LOCAL_MACHINE\ndistributed_type: NO\nmixed_precision: fp8\nnum_processes: 1\nuse_cpu: false\ndebug: true\ndynamo_config:\n  dynamo_backend: INDUCTOR\n';

function configFile(): string {
  const p = join(mkdtempSync(join(tmpdir(), 'single-merge-')), 'config.yaml');
  writeFileSync(p, FILE_TEXT);
  return p;
}

/** Settings the launcher decides and exports (the world's address and port are the rendezvous's: MASTER_ADDR/PORT). */
const DECIDED: readonly (keyof ResolvedValues)[] = [
  'mixedPrecision', 'gradientAccumulationSteps', 'cpu', 'debug', 'distributedType', 'numProcesses', 'numMachines',
  'machineRank', 'processGroupTimeout', 'dynamoBackend', 'useDeepspeed', 'useFsdp', 'useMegatronLm',
];

/** The rank sees the launcher's value and source; its detail is the launcher's, plus the variable it came through. */
type Settings = { readonly [K in keyof ResolvedValues]?: ResolvedSetting<unknown> };

function expectSame(launcher: Settings, rank: Settings) {
  for (const name of DECIDED) {
    const l = launcher[name]!;
    const r = rank[name]!;
    expect({ name, value: r.value, source: r.source }).toEqual({ name, value: l.value, source: l.source });
    if (l.source !== 'default') expect(r.detail.startsWith(`${l.detail} (via `), `${name}: ${r.detail} vs ${l.detail}`).toBe(true);
  }
}

describe('one merge for the launcher and the ranks', () => {
  it('flags and a config file that disagree: the launcher\'s resolved config is what the rank reports, with the same sources', () => {
    const file = configFile();
    const resolved = resolveLaunchArgs({ script: 'train.js', configFile: file, mixedPrecision: 'bf16', numProcesses: 2, timeout: 90 }, { env: {} });
    const l = resolved.config;
    expect(l.mixedPrecision).toEqual({ value: 'bf16', source: 'launch flag', detail: '--mixed_precision' });
    expect(l.numProcesses).toEqual({ value: 2, source: 'launch flag', detail: '--num_processes' });
    expect(l.cpu).toEqual({ value: true, source: 'config file', detail: `${file} (use_cpu)` });
    expect(l.debug).toEqual({ value: false, source: 'default', detail: '' });
    expect(l.distributedType).toEqual({ value: 'MULTI_CPU', source: 'config file', detail: `${file} (distributed_type)` });
    expect(l.processGroupTimeout).toEqual({ value: 90, source: 'launch flag', detail: '--timeout' });
    // The launch's typed fields are that config's values.
    expect(resolved).toMatchObject({ mixedPrecision: 'bf16', numProcesses: 2, cpu: true, debug: false, processGroupTimeout: 90 });

    const plan = buildLaunchPlan(resolved, { env: {}, cpuCount: 2, port: 29555 });
    for (const r of plan.ranks) {
      // No configFile option: the rank finds ACCELERATE_CONFIG_FILE in its env, and reads the export instead.
      const rank = resolveConfig({ env: rankEnvironment(plan, r, {}) });
      expectSame(l, rank);
      expect(rank.mixedPrecision.detail).toBe('--mixed_precision (via ACCELERATE_MIXED_PRECISION)');
      expect(rank.cpu.detail).toBe(`${file} (use_cpu) (via ACCELERATE_USE_CPU)`);
    }

    // The file edited after the launcher resolved it: the ranks' view does not change.
    writeFileSync(file, EDITED);
    expect(resolveConfig({ env: {}, configFile: file }).debug.value).toBe(true);
    const after = resolveConfig({ env: rankEnvironment(plan, plan.ranks[1], {}) });
    expectSame(l, after);
    expect(after.debug).toEqual({ value: false, source: 'default', detail: '' });
    expect(after.dynamoBackend.value).toBe('NO');
  });

  it('a launched script reports, in every rank, the values and sources the launcher resolved, even after the file changed', async () => {
    const file = configFile();
    const out = sink();
    const result = await runLaunch(
      { script: join(import.meta.dirname, 'fixtures', 'report-config.ts'), scriptArgs: [EDITED], configFile: file, mixedPrecision: 'bf16', numProcesses: 2, quiet: true },
      { env: { PATH: process.env.PATH }, cwd: join(import.meta.dirname, '../../../..'), stdout: out.write, stderr: () => {} },
    );
    expect(result.ok, result.summary).toBe(true);
    // The ranks did rewrite the file (to distributed_type NO, fp8, 1 process, no CPU flag, debug, dynamo).
    expect(readFileSync(file, 'utf8')).toBe(EDITED);
    const ranks = out
      .text()
      .split('\n')
      .filter((line) => line.startsWith('CONFIG '))
      .map((line) => JSON.parse(line.slice('CONFIG '.length)) as { rank: number; settings: Record<string, ResolvedSetting<unknown>>; report: string });
    expect(ranks.map((r) => r.rank).sort()).toEqual([0, 1]);
    for (const r of ranks) {
      expectSame(result.resolved.config, r.settings);
      expect(r.settings.mixedPrecision).toMatchObject({ value: 'bf16', source: 'launch flag' });
      expect(r.settings.numProcesses).toMatchObject({ value: 2, source: 'launch flag' });
      expect(r.settings.cpu).toMatchObject({ value: true, source: 'config file' });
      expect(r.settings.distributedType).toMatchObject({ value: 'MULTI_CPU', source: 'config file' });
      expect(r.settings.debug).toMatchObject({ value: false, source: 'default' });
      expect(r.settings.dynamoBackend).toMatchObject({ value: 'NO', source: 'default' });
      expect(r.report).toMatch(/^mixedPrecision +bf16 +launch flag +--mixed_precision \(via ACCELERATE_MIXED_PRECISION\)$/m);
    }
    // The launcher's own report, the same table.
    expect(result.resolved.config.report()).toMatch(/^mixedPrecision +bf16 +launch flag +--mixed_precision$/m);
  }, 60_000);
});
