// `npx accelerate launch` killed with SIGKILL: npm runs the bin through `sh -c`, so the
// launcher's parent is a shell that outlives npx, and the launcher must look further up
// to notice. Real npm (`npm exec -c`, no registry access), real launcher, real ranks.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, cleanEnv, fixture, isAlive, rankResults, ROOT, waitGone } from './helpers.js';

const NPM = join(dirname(process.execPath), 'npm');
const linux = existsSync('/proc/self/stat');
if (!linux) console.log('tests/launch-npx-kill.test.ts skipped: the launcher finds npm\'s shell through /proc, which this system lacks');
else if (!existsSync(NPM)) console.log(`tests/launch-npx-kill.test.ts skipped: no npm beside node at ${NPM}`);

/** Parent pid of `pid` from /proc (the field after the parenthesised command name). */
function ppidOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

/** `npm exec -c '<node> bin.js launch …'`: npm → sh → launcher → ranks → their children, as `npx accelerate launch` starts them. */
async function launchUnderNpm(): Promise<{ npm: ChildProcess; shell: number; launcher: number; ranks: number[]; output: () => string }> {
  const cmd = [process.execPath, BIN, 'launch', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no', fixture('spawn-and-wait.ts')]
    .map((a) => `'${a}'`)
    .join(' ');
  const npm = spawn(NPM, ['exec', '--offline', '-c', cmd], { cwd: ROOT, env: cleanEnv({ NO_GROUP: '1' }), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  npm.stdout!.on('data', (d) => (out += d));
  npm.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 40_000;
  while (rankResults(out).filter(Boolean).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const results = rankResults(out).filter(Boolean) as Array<{ pid: number; grandchild: number }>;
  expect(results, out).toHaveLength(2);
  const launcher = ppidOf(results[0].pid);
  const shell = ppidOf(launcher);
  return { npm, shell, launcher, ranks: results.flatMap((r) => [r.pid, r.grandchild]), output: () => out };
}

describe.skipIf(!linux || !existsSync(NPM))('`npx accelerate launch` killed with SIGKILL', () => {
  it('npm SIGKILLed: the launcher notices (its parent shell is orphaned) and stops every rank; nothing survives', async () => {
    const run = await launchUnderNpm();
    // The shape this guards against: npm → sh -c → launcher.
    expect(ppidOf(run.shell), 'the launcher runs under a shell under npm').toBe(run.npm.pid);
    expect([run.launcher, ...run.ranks].every(isAlive)).toBe(true);
    const killedAt = Date.now();
    run.npm.kill('SIGKILL');
    expect(await waitGone([run.launcher, ...run.ranks, run.shell], 10_000), run.output()).toEqual([]);
    const ms = Date.now() - killedAt;
    expect(ms).toBeLessThan(10_000);
    console.log(`[measured] npm SIGKILL -> launcher and ranks gone in ${ms} ms`);
    expect(run.output()).toMatch(/accelerate launch: the process that started it \(npm, pid \d+\) is gone, stopping 2 rank\(s\)/);
  }, 60_000);

  it('the launcher SIGKILLed under npm: its ranks and their children end themselves', async () => {
    const run = await launchUnderNpm();
    const killedAt = Date.now();
    process.kill(run.launcher, 'SIGKILL');
    expect(await waitGone(run.ranks, 10_000), run.output()).toEqual([]);
    console.log(`[measured] launcher SIGKILL -> ranks gone in ${Date.now() - killedAt} ms`);
    run.npm.kill('SIGKILL');
  }, 60_000);
});
