// `accelerate launch` as a process supervisor, with real gloo ranks (libtorch backend):
// failures, signals and orphans, two machines on loopback, MPI/SLURM-started processes,
// launch-from-code, and `accelerate test`.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, findFreePortForTests, cleanEnv, fixture, isAlive, rankResults, range, ROOT, runAccelerate, startAccelerate, waitGone } from './helpers.js';
import { describe, expect, it } from 'vitest';

const common = ['--num_machines', '1', '--mixed_precision', 'no'];

describe('failures and signals', () => {
  it('a failing rank stops the others; launch exits with its code and names it with its last stderr lines', async () => {
    const r = await runAccelerate(['launch', '--num_processes', '2', ...common, fixture('fail-rank.ts')], { timeoutMs: 50_000 });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('[rank 0] rank 0 joined a group of 2');
    expect(r.stdout).not.toContain('NOT REACHED');
    expect(r.stderr).toMatch(/accelerate launch: rank 1 exited with code 1 after \d+\.\d s\.\n/);
    expect(r.stderr).toMatch(/\n {2}rank 0: /);
    const tail = r.stderr.slice(r.stderr.indexOf('Last lines rank 1 wrote to stderr:'));
    expect(tail).toContain('  | rank 1: loading the batch failed\n');
    expect(tail).toContain('  | Error: corrupt batch 17 on rank 1\n');
    expect(r.ms).toBeLessThan(45_000);
  }, 60_000);

  it('SIGTERM to launch reaches every rank and the processes they started; exit 143; no process survives', async () => {
    const run = startAccelerate(['launch', '--num_processes', '2', ...common, fixture('spawn-and-wait.ts')], { timeoutMs: 50_000 });
    const out = await run.waitFor((s) => rankResults(s).filter(Boolean).length === 2);
    const pids = rankResults(out).flatMap((r: { pid: number; grandchild: number }) => [r.pid, r.grandchild]);
    expect(pids).toHaveLength(4);
    expect(pids.every(isAlive)).toBe(true);
    run.child.kill('SIGTERM');
    const r = await run.done;
    expect(r.code).toBe(143);
    expect(r.stderr).toContain('accelerate launch: received SIGTERM, stopping 2 rank(s)');
    expect(r.stderr).toContain('accelerate launch: interrupted by SIGTERM; every rank was stopped.');
    expect(await waitGone(pids, 8000)).toEqual([]);
  }, 60_000);

  it('Ctrl-C (SIGINT) to launch: exit 130, no process survives', async () => {
    const run = startAccelerate(['launch', '--num_processes', '2', ...common, fixture('spawn-and-wait.ts')], { env: cleanEnv({ NO_GROUP: '1' }), timeoutMs: 30_000 });
    const out = await run.waitFor((s) => rankResults(s).filter(Boolean).length === 2);
    const pids = rankResults(out).flatMap((r: { pid: number; grandchild: number }) => [r.pid, r.grandchild]);
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(130);
    expect(await waitGone(pids, 8000)).toEqual([]);
  }, 40_000);

  it('if launch itself is killed (SIGKILL), its ranks notice and end themselves and their children', async () => {
    const run = startAccelerate(['launch', '--num_processes', '2', ...common, fixture('spawn-and-wait.ts')], { env: cleanEnv({ NO_GROUP: '1' }), timeoutMs: 30_000 });
    const out = await run.waitFor((s) => rankResults(s).filter(Boolean).length === 2);
    const pids = rankResults(out).flatMap((r: { pid: number; grandchild: number }) => [r.pid, r.grandchild]);
    run.child.kill('SIGKILL');
    await run.done;
    expect(await waitGone(pids, 10_000)).toEqual([]);
  }, 40_000);
});

describe('a parent between the user and launch (npx)', () => {
  it('when the parent goes away without passing SIGTERM on (as npm exec does), launch stops its ranks and exits; no process survives', async () => {
    // The middle process stands in for npx: it starts launch and dies on SIGTERM without forwarding it.
    const args = ['launch', '--num_processes', '2', ...common, fixture('spawn-and-wait.ts')];
    const middle = spawn(
      process.execPath,
      ['-e', `const c = require('node:child_process').spawn(process.execPath, ${JSON.stringify([BIN, ...args])}, { stdio: 'inherit' }); console.log('LAUNCH_PID ' + c.pid); setInterval(() => {}, 1000);`],
      { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    middle.stdout!.on('data', (d) => (stdout += d));
    middle.stderr!.on('data', (d) => (stderr += d));
    const deadline = Date.now() + 40_000;
    while (rankResults(stdout).filter(Boolean).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const launchPid = Number(/LAUNCH_PID (\d+)/.exec(stdout)?.[1]);
    const pids = rankResults(stdout).flatMap((r: { pid: number; grandchild: number }) => [r.pid, r.grandchild]);
    expect(pids, stdout + stderr).toHaveLength(4);
    middle.kill('SIGTERM');
    expect(await waitGone([launchPid, ...pids], 10_000)).toEqual([]);
    expect(stderr).toMatch(/accelerate launch: the parent process \(pid \d+, e\.g\. npx\) is gone, stopping 2 rank\(s\)/);
  }, 60_000);
});

describe('joining from several machines and from other launchers', () => {
  it('two `accelerate launch` (machine ranks 0 and 1, same --main_process_ip/port on loopback) train together', async () => {
    const port = await findFreePortForTests();
    const machine = (rank: number) =>
      runAccelerate(
        ['launch', '--num_processes', '2', '--num_machines', '2', '--machine_rank', String(rank), '--main_process_ip', '127.0.0.1', '--main_process_port', String(port), '--mixed_precision', 'no', fixture('train.ts')],
        { timeoutMs: 50_000 },
      );
    const [m0, m1] = await Promise.all([machine(0), machine(1)]);
    expect(m0.code, m0.stderr).toBe(0);
    expect(m1.code, m1.stderr).toBe(0);
    const r0 = rankResults(m0.stdout)[0];
    const r1 = rankResults(m1.stdout)[1];
    expect(rankResults(m0.stdout)).toHaveLength(1);
    expect([r0.rank, r0.world, r0.localRank, r0.machineRank]).toEqual([0, 2, 0, '0']);
    expect([r1.rank, r1.world, r1.localRank, r1.machineRank]).toEqual([1, 2, 0, '1']);
    expect(r1.distributedType).toBe('MULTI_CPU');
    // Same weights on both machines, equal to one process trained on the gathered batches.
    expect(r1.params).toEqual(r0.params);
    r0.params.forEach((v: number, i: number) => expect(v).toBeCloseTo(r0.reference[i], 5));
    expect(r0.lastLoss).toBeLessThan(r0.firstLoss / 10);
    expect(r0.seen).toEqual(range(64));
  }, 60_000);

  for (const [name, varsFor] of [
    ['MPI (OMPI_COMM_WORLD_*)', (r: number) => ({ OMPI_COMM_WORLD_RANK: String(r), OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_LOCAL_RANK: String(r), OMPI_COMM_WORLD_LOCAL_SIZE: '2' })],
    ['SLURM (srun)', (r: number) => ({ SLURM_PROCID: String(r), SLURM_NTASKS: '2', SLURM_LOCALID: String(r), SLURM_NODEID: '0', SLURM_TASKS_PER_NODE: '2', SLURM_JOB_NODELIST: 'localhost' })],
  ] as const) {
    it(`processes started with ${name} variables and no launcher join the same way`, async () => {
      const port = await findFreePortForTests();
      const runRank = (r: number) =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = spawn(process.execPath, ['--import', 'tsx', fixture('train.ts')], {
            cwd: ROOT,
            env: cleanEnv({ ...varsFor(r), MASTER_PORT: String(port), OMP_NUM_THREADS: '1' }),
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (d) => (stdout += d));
          child.stderr.on('data', (d) => (stderr += d));
          const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
          child.on('close', (code) => {
            clearTimeout(timer);
            resolve({ code, stdout, stderr });
          });
        });
      const outs = await Promise.all([runRank(0), runRank(1)]);
      const results = outs.map((o) => {
        expect(o.code, o.stderr).toBe(0);
        return JSON.parse(/^RESULT (.*)$/m.exec(o.stdout)![1]);
      });
      expect(results.map((x) => [x.rank, x.world, x.localRank, x.distributedType])).toEqual([
        [0, 2, 0, 'MULTI_CPU'],
        [1, 2, 1, 'MULTI_CPU'],
      ]);
      expect(results[1].params).toEqual(results[0].params);
      results[0].params.forEach((v: number, i: number) => expect(v).toBeCloseTo(results[0].reference[i], 5));
    }, 60_000);
  }
});

describe('launching from code and accelerate test', () => {
  it('debugLauncher runs the function in 2 CPU processes that form one gloo group, and returns their results', async () => {
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', fixture('from-code.ts')], { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 50_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
    expect(r.code, r.stderr).toBe(0);
    const line = /^DEBUG (.*)$/m.exec(r.stdout)![1];
    expect(JSON.parse(line)).toEqual([
      { rank: 0, size: 2, distributedType: 'MULTI_CPU', cpu: 'true', sum: [3], world: [0, 10] },
      { rank: 1, size: 2, distributedType: 'MULTI_CPU', cpu: 'true', sum: [3], world: [0, 10] },
    ]);
  }, 60_000);

  it('`accelerate test` runs the bundled checks on 2 CPU processes and reports success', async () => {
    const r = await runAccelerate(['test'], { timeoutMs: 55_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Running the accelerate-ts checks with 2 processes on the CPU…\n');
    expect(r.stdout).toContain('[rank 0] accelerate test: 2 processes, MULTI_CPU, backend libtorch, device cpu\n');
    for (const name of ['data sharding (plain)', 'data sharding (split+dispatch)', 'gather', 'gatherObject', 'broadcast', 'reduce', 'padAcrossProcesses', 'triggers', 'mainProcessFirst', 'DDP noSync', 'DDP accumulate (GA = 2)']) {
      expect(r.stdout).toContain(`[rank 0]   ok    ${name}`);
    }
    expect(r.stdout).toContain('[rank 0] All 13 checks passed on 2 processes.\n');
    expect(r.stdout.trimEnd().endsWith('Test is a success! You are ready for your distributed training!')).toBe(true);
    expect(r.stdout).not.toContain('FAIL');
  }, 60_000);

  it('`accelerate test` passes on 3 processes too (split batches divide over any world size)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'acc-test-3-'));
    const config = join(dir, 'three.yaml');
    writeFileSync(config, 'compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nmixed_precision: "no"\nnum_machines: 1\nnum_processes: 3\nmachine_rank: 0\nuse_cpu: true\n');
    const r = await runAccelerate(['test', '--config_file', config], { timeoutMs: 55_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('[rank 0]   ok    data sharding (split) (96 samples)');
    expect(r.stdout).toContain('[rank 0] All 13 checks passed on 3 processes.\n');
  }, 60_000);
});
