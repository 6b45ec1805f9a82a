import { describe, it, expect } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../src/program.js';
import type { CliContext } from '../src/context.js';
import { testLaunchArgs, testScriptPath } from '../src/commands/test.js';

const echo = join(import.meta.dirname, 'fixtures', 'echo-rank.mjs');
const baseEnv: Record<string, string | undefined> = { PATH: process.env.PATH, HOME: process.env.HOME, HF_HOME: mkdtempSync(join(tmpdir(), 'cli-hf-')) };

function capture(env: Record<string, string | undefined> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const ctx: Partial<CliContext> = { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: { ...baseEnv, ...env }, stdinIsTTY: false };
  return { ctx, out: () => out.join(''), err: () => err.join('') };
}

/** The JSON each rank printed, by rank. */
function ranksPrinted(stdout: string): Array<{ argv: string[]; env: Record<string, string> }> {
  const byRank: Array<{ argv: string[]; env: Record<string, string> }> = [];
  for (const line of stdout.split('\n')) {
    const m = /^\[rank (\d+)\] (\{.*\})$/.exec(line);
    if (m) byRank[Number(m[1])] = JSON.parse(m[2]);
  }
  return byRank;
}

describe('accelerate launch', () => {
  it('runs the script per rank with its env; kebab-case and snake_case flags; the script keeps its own flags', async () => {
    const c = capture();
    const code = await runCli(
      ['launch', '--num-processes', '2', '--mixed_precision', 'bf16', '--cpu', '--gradient-accumulation-steps=4', '--num_cpu_threads_per_process', '1', echo, '--num-processes', '3', '--cpu'],
      c.ctx,
    );
    expect(code).toBe(0);
    const ranks = ranksPrinted(c.out());
    expect(ranks).toHaveLength(2);
    for (const [rank, r] of ranks.entries()) {
      expect(r.argv).toEqual(['--num-processes', '3', '--cpu']);
      expect(r.env).toMatchObject({
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        WORLD_SIZE: '2',
        LOCAL_WORLD_SIZE: '2',
        MASTER_ADDR: '127.0.0.1',
        OMP_NUM_THREADS: '1',
        ACCELERATE_MIXED_PRECISION: 'bf16',
        ACCELERATE_USE_CPU: 'true',
        ACCELERATE_GRADIENT_ACCUMULATION_STEPS: '4',
      });
    }
    expect(ranks[0].env.MASTER_PORT).toBe(ranks[1].env.MASTER_PORT);
  });

  it('merges the config file (flags win) and exports FSDP settings as FSDP_*', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-launch-'));
    const cfg = join(dir, 'fsdp.yaml');
    writeFileSync(cfg, 'distributed_type: FSDP\nnum_processes: 2\nmixed_precision: bf16\nfsdp_config:\n  offload_params: true\n');
    // FSDP needs an installed package declaring the strategy (launch checks before spawning): a stand-in next to the script.
    const provider = join(dir, 'node_modules', 'acme-fsdp');
    mkdirSync(provider, { recursive: true });
    writeFileSync(join(provider, 'package.json'), JSON.stringify({ name: 'acme-fsdp', version: '1.0.0', accelerate: { plugin: { entry: './index.js', strategy: 'FSDP' } } }));
    const script = join(dir, 'echo-rank.mjs');
    copyFileSync(echo, script);
    const c = capture();
    expect(await runCli(['launch', '--config_file', cfg, '--mixed-precision', 'no', '--num_cpu_threads_per_process', '1', script], c.ctx)).toBe(0);
    const ranks = ranksPrinted(c.out());
    expect(ranks).toHaveLength(2);
    expect(ranks[1].env).toMatchObject({ ACCELERATE_USE_FSDP: 'true', FSDP_OFFLOAD_PARAMS: 'true', WORLD_SIZE: '2' });
    expect(ranks[1].env.ACCELERATE_MIXED_PRECISION).toBeUndefined();
  });

  it('a failing rank: exit code of the rank, and a summary naming it with its stderr', async () => {
    const c = capture({ EXIT_RANK: '1', EXIT_CODE: '5' });
    expect(await runCli(['launch', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no', echo], c.ctx)).toBe(5);
    expect(c.err()).toContain('[rank 1] rank 1 gives up\n');
    expect(c.err()).toMatch(/accelerate launch: rank 1 exited with code 5 after \d+\.\d s\.\n/);
    expect(c.err()).toContain('Last lines rank 1 wrote to stderr:\n  | rank 1 gives up\n');
  });

  it('-q prints rank output without the prefix', async () => {
    const c = capture();
    expect(await runCli(['launch', '-q', '--num_processes', '1', '--num_machines', '1', '--mixed_precision', 'no', echo, 'x'], c.ctx)).toBe(0);
    expect(c.out()).toMatch(/^\{"argv":\["x"\],"env":\{"RANK":"0",/);
  });

  it('[B60] refuses --cpu with --multi_gpu and --multi_gpu with one process, before starting anything', async () => {
    const a = capture();
    expect(await runCli(['launch', '--cpu', '--multi_gpu', echo], a.ctx)).toBe(1);
    expect(a.err()).toBe(
      'accelerate: You can only use one of --cpu, --multi_gpu, --tpu, --use_deepspeed, --use_fsdp at a time; got --cpu and --multi_gpu. Keep one of them.\n',
    );
    expect(a.out()).toBe('');
    const b = capture();
    expect(await runCli(['launch', '--multi-gpu', '--num-processes', '1', echo], b.ctx)).toBe(1);
    expect(b.err()).toMatch(/^accelerate: --multi_gpu needs at least 2 processes, but --num_processes is 1\./);
  });

  it('bad values and unknown flags name the flag and the fix', async () => {
    const a = capture();
    expect(await runCli(['launch', '--num_processes', 'two', echo], a.ctx)).toBe(1);
    expect(a.err()).toBe('accelerate: --num_processes got "two", which is not a whole number; pass e.g. --num_processes 2.\n');
    const b = capture();
    expect(await runCli(['launch', '--num_procesess', '2', echo], b.ctx)).toBe(1);
    expect(b.err()).toBe("accelerate: unknown option '--num_procesess' (did you mean --num_processes?)\n");
    const c = capture();
    expect(await runCli(['launch', '--max_restarts', '2', echo], c.ctx)).toBe(1);
    expect(c.err()).toMatch(/^accelerate: --max_restarts is 2, but accelerate-ts does not restart failed workers/);
    const d = capture();
    expect(await runCli(['launch', '--num_processes', '1', 'missing.ts'], d.ctx)).toBe(1);
    expect(d.err()).toMatch(/^accelerate: The training script "missing.ts" does not exist/);
    const e = capture();
    expect(await runCli(['launch', '--tpu', echo], e.ctx)).toBe(1);
    expect(e.err()).toMatch(/^accelerate: --tpu is not supported by accelerate-ts/);
  });

  it('help groups the flags as Accelerate does and shows defaults', async () => {
    const c = capture();
    expect(await runCli(['launch', '--help'], c.ctx)).toBe(0);
    const text = c.out();
    expect(text).toMatch(/^Usage: accelerate launch \[flags\] <script> \[script args\.\.\.\]/);
    for (const heading of ['General:', 'Hardware selection:', 'Resources:', 'Distributed:', 'FSDP (exported as FSDP_* with --use_fsdp):']) expect(text).toContain(heading);
    expect(text).toContain('--num_processes <n>');
    expect(text).toContain('-q, --quiet');
    expect(text).toMatch(/--max_restarts <n>\s+Restarts of the worker group before failing; only 0 is supported\. \(default: 0\)/);
    expect(text).not.toContain('--tpu_use_sudo');
  });
});

describe('accelerate test', () => {
  it('launches the bundled check script with 2 CPU processes, the given config file, or the default one', () => {
    const script = testScriptPath();
    expect(script).toMatch(/test-script\.(js|ts)$/);
    expect(testLaunchArgs({ env: baseEnv })).toEqual({ cpu: true, numProcesses: 2, numMachines: 1, mixedPrecision: 'no', script });
    expect(testLaunchArgs({ env: baseEnv }, '/x/cfg.yaml')).toEqual({ configFile: '/x/cfg.yaml', script });
    const home = mkdtempSync(join(tmpdir(), 'cli-hf-'));
    const withDefault = join(home, 'accelerate');
    mkdirSync(withDefault);
    writeFileSync(join(withDefault, 'default_config.yaml'), 'distributed_type: MULTI_CPU\nnum_processes: 2\n');
    expect(testLaunchArgs({ env: { HF_HOME: home } })).toEqual({ script });
  });
});
