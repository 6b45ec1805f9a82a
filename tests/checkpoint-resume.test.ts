// Exact resume with the libtorch backend: saveState at micro-step k (mid-epoch, after an
// optimizer update), a fresh process with another seed loads the checkpoint and finishes; the
// losses and final weights equal those of the run that never stopped, bit for bit. Single
// process, 2 processes through `accelerate launch` + gloo, and a change of world size (2 -> 1,
// 1 -> 2) where the data position continues exactly and the lost/missing RNG states are named.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, cleanEnv, fixture, rankResults, runAccelerate } from './helpers.js';

const FIXTURE = fixture('checkpoint-resume.ts');
interface Result {
  rank: number;
  P: number;
  stopped: boolean;
  losses: number[];
  ids: number[];
  gathered: number[];
  params: number[][];
  loadedParams: number[][];
  warnings: string[];
}

/** Run the fixture in one plain process (no launcher). */
function single(mode: string, dir: string, stopAt: number): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, mode, dir, String(stopAt)], { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) reject(new Error(`fixture ${mode} failed (${code}):\n${out}\n${err}`));
      else resolve(JSON.parse(line.slice(7)) as Result);
    });
  });
}

/** Run the fixture under `accelerate launch` with `P` processes. */
async function launched(P: number, mode: string, dir: string, stopAt: number): Promise<Result[]> {
  const run = await runAccelerate(['launch', '--num_processes', String(P), '--num_machines', '1', '--mixed_precision', 'no', FIXTURE, mode, dir, String(stopAt)], {
    timeoutMs: 55_000,
  });
  const ranks = rankResults<Result>(run.stdout);
  if (run.code !== 0 || ranks.length !== P) throw new Error(`launch ${mode} failed (${run.code}):\n${run.stdout}\n${run.stderr}`);
  return ranks;
}

describe('exact resume, libtorch, one process', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'acc-resume-1-')), 'ckpt');
  let full: Result;
  let first: Result;
  let second: Result;
  beforeAll(async () => {
    full = await single('full', dir, 6);
    first = await single('stop', dir, 6);
    second = await single('resume', dir, 6);
  }, 120_000);

  it('stopped at micro-step 6 of 16 (mid-epoch, dropout + AdamW + warmup schedule + accumulation 2) and resumed: bit-identical losses and weights', () => {
    expect(first.stopped).toBe(true);
    expect(first.losses).toHaveLength(6);
    expect(full.losses).toHaveLength(16);
    expect([...first.losses, ...second.losses]).toEqual(full.losses);
    expect([...first.ids, ...second.ids]).toEqual(full.ids);
    expect(second.params).toEqual(full.params);
    expect(second.warnings).toEqual([]);
  });

  it('the resumed run really depends on the checkpoint: its seed without loading gives other weights and losses', async () => {
    const control = await single('noload', dir, 6);
    expect(second.loadedParams).toEqual(first.params);
    expect(control.loadedParams).not.toEqual(first.params);
    expect(control.losses.slice(6)).not.toEqual(second.losses);
  });

  it('a checkpoint of one process loads on two: rank 1 warns that it has no saved RNG state; the data position continues exactly', async () => {
    const ranks = await launched(2, 'resume', dir, 6);
    expect(ranks[0].warnings).toEqual([]);
    expect(ranks[1].warnings).toEqual([expect.stringMatching(/^Rank 1's RNG state is not restored: .* saved by 1 process\(es\) and holds random_states_0..0, and rank 1 did not exist then/)]);
    for (const r of ranks) expect(r.loadedParams).toEqual(first.params);
    // 36 of 48 samples were consumed; the 2-process run reads the remaining 12 of the same order.
    expect(ranks[0].gathered.slice(0, 12)).toEqual(full.ids.slice(36, 48));
  }, 60_000);

  it('with strict: true the same load fails on rank 1 and names the missing RNG state', async () => {
    const run = await runAccelerate(['launch', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no', FIXTURE, 'resume', dir, '6', 'strict'], {
      timeoutMs: 55_000,
    });
    expect(run.code).not.toBe(0);
    expect(run.stdout + run.stderr).toMatch(/Rank 1's RNG state is not restored: .*rank 1 did not exist then.*\(loadState was called with strict: true\)/);
    // Rank 0 does not run on into training: it fails too, naming rank 1's problem.
    expect(run.stdout + run.stderr).toMatch(/loadState failed on rank 1: Rank 1's RNG state is not restored/);
  }, 60_000);
});

describe('exact resume, libtorch, 2 processes through accelerate launch (gloo)', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'acc-resume-2-')), 'ckpt');
  let full: Result[];
  let first: Result[];
  let second: Result[];
  beforeAll(async () => {
    full = await launched(2, 'full', dir, 2);
    first = await launched(2, 'stop', dir, 2);
    second = await launched(2, 'resume', dir, 2);
  }, 180_000);

  it('every rank: losses and weights bit-identical to the run that never stopped; one random_states file per rank', async () => {
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(dir).filter((f) => f.startsWith('random_states_')).sort()).toEqual([
      'random_states_0.json',
      'random_states_0.safetensors',
      'random_states_1.json',
      'random_states_1.safetensors',
    ]);
    for (const r of [0, 1]) {
      expect(first[r].losses).toHaveLength(2);
      expect(full[r].losses).toHaveLength(8);
      expect([...first[r].losses, ...second[r].losses]).toEqual(full[r].losses);
      expect([...first[r].ids, ...second[r].ids]).toEqual(full[r].ids);
      expect(second[r].params).toEqual(full[r].params);
      expect(second[r].warnings).toEqual([]);
    }
    // Dropout differs per rank, so the ranks' losses differ (each rank's own RNG was restored).
    expect(full[0].losses).not.toEqual(full[1].losses);
  });

  it('the 2-process checkpoint loads on 1 process: the data position continues the same global order, and rank 1\'s lost RNG state is named', async () => {
    const [one] = await launched(1, 'resume', dir, 2);
    expect(one.P).toBe(1);
    // 2 steps x 6 x 2 processes = 24 samples consumed; one process reads the other 24 of epoch 0 in the same order.
    expect(one.ids.slice(0, 24)).toEqual(full[0].gathered.slice(24, 48));
    expect(one.warnings).toEqual([expect.stringMatching(/^random_states_1 in .* are not restored: the checkpoint was saved by 2 processes and this run has 1/)]);
    expect(one.loadedParams).toEqual(first[0].params);
    expect(one.losses).toHaveLength(4 + 8);
  }, 60_000);
});

describe('loadState() falls back on every rank together', () => {
  it("rank 1 cannot parse its RNG file in the newest checkpoint: both ranks load the one before, and say why", async () => {
    const { readFileSync, writeFileSync } = await import('node:fs');
    const { createHash } = await import('node:crypto');
    const projectDir = mkdtempSync(join(tmpdir(), 'acc-fallback-'));
    const fx = fixture('load-fallback.ts');
    const args = (mode: string) => ['launch', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no', fx, mode, projectDir];
    let run = await runAccelerate(args('save'), { timeoutMs: 55_000 });
    expect(rankResults(run.stdout).length, run.stderr).toBe(2);
    // Damage a file only rank 1 reads, with a manifest that still vouches for it.
    const ck1 = join(projectDir, 'checkpoints', 'checkpoint_1');
    const file = 'random_states_1.safetensors';
    writeFileSync(join(ck1, file), 'not a safetensors file');
    const man = JSON.parse(readFileSync(join(ck1, 'manifest.json'), 'utf8'));
    const bytes = readFileSync(join(ck1, file));
    man.files[file] = { size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
    writeFileSync(join(ck1, 'manifest.json'), JSON.stringify(man));
    run = await runAccelerate(args('load'), { timeoutMs: 55_000 });
    const ranks = rankResults<{ rank: number; dir: string; warnings: string[]; iteration: number }>(run.stdout);
    expect(ranks.length, `${run.stdout}\n${run.stderr}`).toBe(2);
    for (const r of ranks) {
      expect(r.dir).toBe(join(projectDir, 'checkpoints', 'checkpoint_0'));
      expect(r.iteration).toBe(2);
    }
    expect(ranks[1]!.warnings.join('\n')).toMatch(/skipped the newer checkpoint checkpoint_1: .*random_states_1\.safetensors cannot be parsed/);
    expect(ranks[0]!.warnings.join('\n')).toMatch(/skipped the newer checkpoint checkpoint_1: another process could not read its files/);
  }, 120_000);
});
