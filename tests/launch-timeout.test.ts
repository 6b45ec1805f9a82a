// The collective timeout set without code, through the real CLI: `accelerate launch
// --timeout`, ACCELERATE_PROCESS_GROUP_TIMEOUT, `accelerate env`, and bad values refused
// before any rank starts.
import { describe, expect, it } from 'vitest';
import { cleanEnv, fixture, runAccelerate } from './helpers.js';

const args = (...extra: string[]) => ['launch', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no', ...extra, fixture('skip-collective.ts')];

describe('collective timeout without code', () => {
  it('--timeout 3: a collective one rank skipped fails after 3 s, and the error names the setting', async () => {
    const r = await runAccelerate(args('--timeout', '3'), { timeoutMs: 50_000 });
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toContain("on rank 0 of group 'default' did not complete within 3000 ms");
    expect(r.stdout + r.stderr).toContain('accelerate launch --timeout / ACCELERATE_PROCESS_GROUP_TIMEOUT');
    expect(r.stdout).not.toContain('NOT REACHED');
    expect(r.ms).toBeLessThan(30_000);
  }, 60_000);

  it('ACCELERATE_PROCESS_GROUP_TIMEOUT=2.5 in the launcher environment does the same', async () => {
    const r = await runAccelerate(args(), { env: cleanEnv({ ACCELERATE_PROCESS_GROUP_TIMEOUT: '2.5' }), timeoutMs: 50_000 });
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toContain('did not complete within 2500 ms');
  }, 60_000);

  it('bad values stop the launch before any rank starts, naming the flag or variable, the value and the fix', async () => {
    const flag = await runAccelerate(args('--timeout', '0'), { timeoutMs: 20_000 });
    expect(flag.code).not.toBe(0);
    expect(flag.stderr).toContain('--timeout is 0; pass a positive number of seconds, e.g. --timeout 600');
    expect(flag.stdout).not.toContain('[rank');
    const env = await runAccelerate(args(), { env: cleanEnv({ ACCELERATE_PROCESS_GROUP_TIMEOUT: '30m' }), timeoutMs: 20_000 });
    expect(env.code).not.toBe(0);
    expect(env.stderr).toContain('ACCELERATE_PROCESS_GROUP_TIMEOUT="30m" is not a positive number of seconds');
    expect(env.stdout).not.toContain('[rank');
  }, 40_000);

  it('accelerate env shows the timeout and where it came from', async () => {
    const r = await runAccelerate(['env'], { env: cleanEnv({ ACCELERATE_PROCESS_GROUP_TIMEOUT: '600' }), timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/processGroupTimeout\s+600\s+env\s+ACCELERATE_PROCESS_GROUP_TIMEOUT/);
  }, 30_000);
});
