// A real child process killed with SIGKILL in the middle of saveState: the previous checkpoint
// stays loadable with its old values, and the half-written folder is never taken for a checkpoint.
import { describe, it, expect, beforeEach } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Accelerator } from '../../src/accelerator/accelerator.js';
import { AcceleratorState } from '../../src/state/accelerator-state.js';
import { ReferenceBackend, RegressionModel } from '../../src/testing/index.js';

const CHILD = join(import.meta.dirname, 'fixtures', 'save-child.ts');

beforeEach(async () => {
  await AcceleratorState.resetState();
});

/** Start the child, wait until its second save has written at least two files into the temporary folder, SIGKILL it. */
async function killMidSave(mode: 'replace' | 'auto', folder: string, tempParent: string): Promise<{ signal: string | null; stdout: string; temp: string[] }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, mode, folder], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const closed = new Promise<string | null>((resolve) => child.on('close', (_code, signal) => resolve(signal)));
  const deadline = Date.now() + 40_000;
  let temp: string[] = [];
  for (;;) {
    if (child.exitCode !== null) throw new Error(`child ended early:\n${stdout}\n${stderr}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`timed out:\n${stdout}\n${stderr}`);
    }
    if (stdout.includes('SAVING2') && existsSync(tempParent)) {
      temp = readdirSync(tempParent).filter((e) => /^\.\S+\.tmp-\d+$/.test(e));
      if (temp.length === 1 && readdirSync(join(tempParent, temp[0])).length >= 2) break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGKILL');
  const signal = await closed;
  return { signal, stdout, temp };
}

describe('kill -9 during saveState', () => {
  it('replacing a folder: the old checkpoint is intact and loads a = 1; the next save cleans the leftover', async () => {
    const root = mkdtempSync(join(tmpdir(), 'acc-kill-'));
    const dir = join(root, 'ckpt');
    const { signal, stdout, temp } = await killMidSave('replace', dir, root);
    expect(signal).toBe('SIGKILL');
    expect(stdout).not.toContain('SAVED2');
    expect(temp).toHaveLength(1);
    expect(readdirSync(join(root, temp[0]))).not.toContain('manifest.json');
    const acc = new Accelerator({ backend: new ReferenceBackend(), configFile: false, env: {} });
    const model = new RegressionModel({ a: 0, b: 0 });
    await acc.prepare(model);
    const res = await acc.loadState(dir);
    // The child also prepared an optimizer; only the model is prepared here.
    expect(res.warnings).toEqual([expect.stringMatching(/holds 1 optimizer\(s\) but only 0 are prepared/)]);
    expect(model.a.item()).toBe(1);
    model.a.data[0] = 3;
    await acc.saveState(dir);
    expect(readdirSync(root)).toEqual(['ckpt']);
    model.a.data[0] = 0;
    await acc.loadState(dir);
    expect(model.a.item()).toBe(3);
  });

  it('automatic naming: checkpoint_1 interrupted, loadState() loads checkpoint_0 and the hidden temporary folder is ignored', async () => {
    const project = mkdtempSync(join(tmpdir(), 'acc-kill-auto-'));
    const { temp } = await killMidSave('auto', project, join(project, 'checkpoints'));
    expect(temp).toEqual([expect.stringMatching(/^\.checkpoint_1\.tmp-\d+$/)]);
    const acc = new Accelerator({ backend: new ReferenceBackend(), configFile: false, env: {}, projectConfig: { projectDir: project, automaticCheckpointNaming: true } });
    const model = new RegressionModel({ a: 0, b: 0 });
    await acc.prepare(model);
    const res = await acc.loadState();
    expect(res.dir).toBe(join(project, 'checkpoints', 'checkpoint_0'));
    expect(model.a.item()).toBe(1);
    // The next save is checkpoint_1 again, and replaces the leftover of the killed one.
    expect(await acc.saveState()).toBe(join(project, 'checkpoints', 'checkpoint_1'));
    expect(readdirSync(join(project, 'checkpoints')).sort()).toEqual(['checkpoint_0', 'checkpoint_1']);
  });
});
