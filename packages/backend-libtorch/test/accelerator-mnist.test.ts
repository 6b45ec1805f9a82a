// The README's main job, as a user runs it: examples/mnist/train.ts on real MNIST
// digits through the Accelerator (needs the packages built, as `npm test` does).
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './fixtures/python.js';

const SCRIPT = join(REPO_ROOT, 'examples/mnist/train.ts');

function train(args: string[]) {
  // A clean environment for the world: no launcher variables leak in from a parent run.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|MASTER_ADDR|MASTER_PORT|ACCELERATE_)/.test(k)));
  return spawnSync(process.execPath, ['--import', 'tsx', SCRIPT, ...args], { cwd: REPO_ROOT, env, encoding: 'utf8', timeout: 240_000 });
}

describe('examples/mnist/train.ts', () => {
  it('one epoch on 8,500 digits: ≥ 90% of the 1,500 held-out digits, one line per epoch without a TTY, weights saved', () => {
    const out = mkdtempSync(join(tmpdir(), 'mnist-'));
    const r = train(['--epochs', '1', '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^accelerate-ts MNIST: 1 process\(es\), device cpu, \d+ thread\(s\) each, mixed precision no/);
    expect(lines[1]).toMatch(/^epoch 1\/1: train loss \d+\.\d{4}, held-out accuracy \d+\.\d\d% \(1500 digits\)/);
    // no progress bar (carriage returns) when stdout is a pipe
    expect(r.stdout).not.toContain('\r');
    const acc = Number(/held-out accuracy (\d+\.\d+)% after 1 epoch/.exec(lines.at(-1)!)?.[1]);
    expect(acc).toBeGreaterThanOrEqual(90);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
    // 16·1·3·3+16 + 32·16·3·3+32 + 10·1568+10 float32 parameters plus the safetensors header
    expect(statSync(join(out, 'model.safetensors')).size).toBeGreaterThan(4 * (160 + 4640 + 15690));
  }, 240_000);

  it('rejects bad flags with the usage text and exit code 2', () => {
    const r = train(['--mixed-precision', 'fp16']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--mixed-precision must be "no" or "bf16"');
    const r2 = train(['--epochs', 'zero']);
    expect(r2.status).toBe(2);
    expect(r2.stderr).toContain('--epochs must be a whole number >= 1');
    expect(r2.stderr).toContain('Usage: npm run mnist');
  });
});
