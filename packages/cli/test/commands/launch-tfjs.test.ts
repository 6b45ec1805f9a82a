// `accelerate launch` with several processes on the tfjs backend: it asks
// @accelerate/backend-tfjs's tfjsMultiProcessSupport() before spawning, and
// fails with its message when the gloo process group cannot load. "Not
// installed" is simulated through the importer the CLI context offers (the
// function's own importer hook); "available" is the real package of this repo.
import { describe, it, expect } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../src/program.js';
import { checkTfjsMultiProcess, requestedBackend } from '../../src/commands/launch.js';
import type { CliContext } from '../../src/context.js';

const echo = join(import.meta.dirname, '..', 'fixtures', 'echo-rank.mjs');
const baseEnv: Record<string, string | undefined> = { PATH: process.env.PATH, HOME: process.env.HOME, HF_HOME: mkdtempSync(join(tmpdir(), 'cli-hf-')) };

/** Imports the real packages, except @accelerate/backend-libtorch, which is "not installed". */
const withoutLibtorch = async (name: string): Promise<unknown> => {
  if (name === '@accelerate/backend-libtorch') {
    throw Object.assign(new Error(`Cannot find package '@accelerate/backend-libtorch' imported from ${import.meta.filename}`), { code: 'ERR_MODULE_NOT_FOUND' });
  }
  return import(name);
};

function capture(env: Record<string, string | undefined> = {}, importModule?: CliContext['importModule']) {
  const out: string[] = [];
  const err: string[] = [];
  const ctx: Partial<CliContext> = { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: { ...baseEnv, ...env }, stdinIsTTY: false, importModule };
  return { ctx, out: () => out.join(''), err: () => err.join('') };
}

const GLOO_MISSING =
  "The tfjs backend runs several processes through @accelerate/backend-libtorch's gloo process group, which is not installed. " +
  'Install it (npm install @accelerate/backend-libtorch; it needs libtorch, see its README) or run a single process (--num_processes 1).';

describe('accelerate launch on the tfjs backend', () => {
  it('ACCELERATE_BACKEND=tfjs, 2 processes, no gloo: fails before spawning with tfjsMultiProcessSupport()\'s message', async () => {
    const c = capture({ ACCELERATE_BACKEND: 'tfjs' }, withoutLibtorch);
    expect(await runCli(['launch', '--num_processes', '2', echo], c.ctx)).toBe(1);
    expect(c.err()).toBe(`accelerate: cannot start 2 processes on the tfjs backend (ACCELERATE_BACKEND=tfjs): ${GLOO_MISSING}\n`);
    expect(c.out()).toBe(''); // no rank ran
  });

  it('--backend tfjs among the script arguments counts as asking for tfjs', async () => {
    const c = capture({}, withoutLibtorch);
    expect(await runCli(['launch', '--num_processes', '2', echo, '--backend', 'tfjs'], c.ctx)).toBe(1);
    expect(c.err()).toContain('(the script argument --backend tfjs): The tfjs backend runs several processes');
    expect(c.out()).toBe('');
  });

  it('no backend asked for, libtorch not installed, tfjs installed: the automatic choice is tfjs, so the same check fails', async () => {
    const c = capture({}, withoutLibtorch);
    expect(await runCli(['launch', '--num_processes', '2', echo], c.ctx)).toBe(1);
    expect(c.err()).toBe(
      `accelerate: cannot start 2 processes on the tfjs backend (@accelerate/backend-libtorch is not installed, so the backend is tfjs): ${GLOO_MISSING}\n`,
    );
  });

  it('one process needs no gloo: the script runs', async () => {
    const c = capture({ ACCELERATE_BACKEND: 'tfjs' }, withoutLibtorch);
    expect(await runCli(['launch', '--num_processes', '1', echo], c.ctx)).toBe(0);
    expect(c.out()).toMatch(/^\[rank 0\] \{"argv":\[\],/);
    expect(c.err()).not.toContain('tfjs backend');
  });

  it('with the real gloo (backend-libtorch installed here) 2 tfjs processes start', async () => {
    const c = capture({ ACCELERATE_BACKEND: 'tfjs' }); // the default importer: real packages
    expect(await runCli(['launch', '--num_processes', '2', echo], c.ctx)).toBe(0);
    expect(c.out().split('\n').filter((l) => l.startsWith('[rank ')).length).toBe(2);
    expect(await checkTfjsMultiProcess(2, [], { ...c.ctx, env: { ACCELERATE_BACKEND: 'tfjs' } } as CliContext)).toBeUndefined();
  });

  it('asking for libtorch, or one process, skips the check without importing anything', async () => {
    const imported: string[] = [];
    const ctx = { env: { ACCELERATE_BACKEND: 'libtorch' }, importModule: async (n: string) => void imported.push(n) } as unknown as CliContext;
    expect(await checkTfjsMultiProcess(2, [], ctx)).toBeUndefined();
    expect(await checkTfjsMultiProcess(1, ['--backend', 'tfjs'], { ...ctx, env: {} })).toBeUndefined();
    expect(imported).toEqual([]);
  });

  it('requestedBackend reads ACCELERATE_BACKEND first, then --backend X / --backend=X; auto means nothing asked', () => {
    expect(requestedBackend({ ACCELERATE_BACKEND: 'TFJS' }, ['--backend', 'libtorch'])).toEqual({ backend: 'tfjs', source: 'ACCELERATE_BACKEND=tfjs' });
    expect(requestedBackend({}, ['--epochs', '1', '--backend=tfjs'])).toEqual({ backend: 'tfjs', source: 'the script argument --backend tfjs' });
    expect(requestedBackend({ ACCELERATE_BACKEND: 'auto' }, ['--backend', 'auto'])).toBeUndefined();
    expect(requestedBackend({}, ['--backend'])).toBeUndefined();
  });
});
