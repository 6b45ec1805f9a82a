// examples/mnist/train.ts on the tfjs backend, as a user runs it: by the flag, by
// the automatic fallback when @accelerate/backend-libtorch is absent, and on two
// processes through the real `accelerate launch` (gloo borrowed from backend-libtorch).
// Needs the packages built (`npm run build`, as `npm test` does).
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '../../../..');
const SCRIPT = join(ROOT, 'examples/mnist/train.ts');
const BIN = join(ROOT, 'packages/cli/dist/bin.js');
const HIDE_LIBTORCH = join(import.meta.dirname, '../fixtures/hide-libtorch.mjs');

/** This process's environment without launcher / Accelerate variables (no world leaks in from a parent run). */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|MASTER_ADDR|MASTER_PORT|ACCELERATE_.*|NODE_OPTIONS|VITEST.*|CI)$/.test(k)) env[k] = v;
  }
  return env;
}

function run(nodeArgs: string[], env: Record<string, string> = cleanEnv()) {
  return spawnSync(process.execPath, nodeArgs, { cwd: ROOT, env, encoding: 'utf8', timeout: 180_000 });
}

const finalAccuracy = (stdout: string) => Number(/held-out accuracy (\d+\.\d\d)% after 1 epoch\(s\)/.exec(stdout)?.[1]);

describe('examples/mnist/train.ts on tfjs', () => {
  it('--backend tfjs: one epoch on wasm reaches >= 85% of the 1,500 held-out digits, one line per epoch without a TTY', () => {
    const r = run(['--import', 'tsx', SCRIPT, '--backend', 'tfjs', '--epochs', '1']);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^accelerate-ts MNIST: 1 process\(es\), device cpu, 1 thread\(s\) each, mixed precision no, gradient accumulation 1, tfjs \d+\.\d+\.\d+ \(wasm\) \(--backend tfjs\)$/);
    expect(lines[1]).toMatch(/^epoch 1\/1: train loss \d+\.\d{4}, held-out accuracy \d+\.\d\d% \(1500 digits\)/);
    expect(r.stdout + r.stderr).not.toContain('\r'); // no progress bar in a pipe
    expect(finalAccuracy(r.stdout)).toBeGreaterThanOrEqual(85);
  }, 180_000);

  it('without @accelerate/backend-libtorch the automatic choice falls back to tfjs and says why', () => {
    const r = run(['--import', HIDE_LIBTORCH, '--import', 'tsx', SCRIPT, '--epochs', '1']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(/, tfjs \d+\.\d+\.\d+ \(wasm\) \(auto: @accelerate\/backend-libtorch is not installed\)$/);
    expect(finalAccuracy(r.stdout)).toBeGreaterThanOrEqual(85);
  }, 180_000);

  it('ACCELERATE_BACKEND=libtorch without libtorch: exits 1 and says what to do', () => {
    const r = run(['--import', HIDE_LIBTORCH, '--import', 'tsx', SCRIPT, '--epochs', '1'], { ...cleanEnv(), ACCELERATE_BACKEND: 'libtorch' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('ACCELERATE_BACKEND=libtorch: @accelerate/backend-libtorch is not installed. Run scripts/setup.sh (libtorch) or use --backend tfjs.');
  });

  it.skipIf(!existsSync(BIN))('accelerate launch --num_processes 2 ... --backend tfjs: both ranks train over gloo, rank 0 reports >= 80%', () => {
    const r = run([BIN, 'launch', '--num_processes', '2', '--mixed_precision', 'no', '--num_machines', '1', SCRIPT, '--backend', 'tfjs', '--epochs', '1']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\[rank 0\] accelerate-ts MNIST: 2 process\(es\), device cpu, 1 thread\(s\) each, .*tfjs .*\(wasm\) \(--backend tfjs\)$/m);
    expect(finalAccuracy(r.stdout)).toBeGreaterThanOrEqual(80);
    expect(r.stdout).not.toContain('[rank 1] epoch'); // only the main process prints
  }, 180_000);

  it.skipIf(!existsSync(BIN))('without libtorch, the README main job (2 processes) fails before spawning with what to install', () => {
    const r = run(['--import', HIDE_LIBTORCH, BIN, 'launch', '--num_processes', '2', SCRIPT]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      'accelerate: cannot start 2 processes on the tfjs backend (@accelerate/backend-libtorch is not installed, so the backend is tfjs): ' +
        "The tfjs backend runs several processes through @accelerate/backend-libtorch's gloo process group, which is not installed. " +
        'Install it (npm install @accelerate/backend-libtorch; it needs libtorch, see its README) or run a single process (--num_processes 1).\n',
    );
  });
});
