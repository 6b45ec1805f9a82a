import { describe, expect, it } from 'vitest';
import { findFreePort } from '@accelerate/core/internal';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as torch from '../src/index.js';
import { referencePython } from './fixtures/python.js';

const WORKER = fileURLToPath(new URL('./fixtures/torchrun-worker.ts', import.meta.url));
const major = (v: string) => Number(v.split('.')[0]);

/** Python's torchrun over 2 ranks of the worker; returns each rank's RESULT / ERROR line. */
function torchrun(python: string, port: number): { results: Array<Record<string, unknown>>; errors: string[]; output: string } {
  const r = spawnSync(
    python,
    ['-m', 'torch.distributed.run', '--no-python', '--nproc_per_node', '2', '--master_port', String(port), process.execPath, '--import', 'tsx', WORKER],
    { encoding: 'utf8', timeout: 120_000, env: { ...process.env, OMP_NUM_THREADS: '1' } },
  );
  const output = `${r.stdout}\n${r.stderr}`;
  const results = [...output.matchAll(/^RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]!) as Record<string, unknown>);
  const errors = [...output.matchAll(/^ERROR (.*)$/gm)].map((m) => JSON.parse(m[1]!) as string);
  return { results, errors, output };
}

describe('a script started by Python torchrun (no accelerate launch)', () => {
  it('joins torchrun\'s agent store and all-reduces on 2 ranks (libtorch 2.x), or says what to rebuild (a 1.x addon under a torch 2 torchrun)', async (ctx) => {
    const found = referencePython(['torch']);
    if ('reason' in found || major(found.torchVersion) < 2) {
      console.log(`[torchrun] skipped: ${'reason' in found ? found.reason : `torch ${found.torchVersion} has no agent store`} (needs a Python torch 2.x with torchrun)`);
      ctx.skip();
      return;
    }
    const run = torchrun(found.python, await findFreePort('127.0.0.1'));
    if (major(torch.version) >= 2) {
      expect(run.errors, run.output).toEqual([]);
      expect(run.results.map((r) => r.rank).sort()).toEqual([0, 1]);
      for (const r of run.results) expect(r).toMatchObject({ world: 2, sum: 3, agentStore: 'True' });
    } else {
      expect(run.errors.length, run.output).toBeGreaterThan(0);
      for (const e of run.errors) expect(e).toMatch(/torchrun hosts the rendezvous store in its agent.*libtorch 1\.13.*Build the addon against the torch torchrun comes from/);
    }
  }, 150_000);
});
