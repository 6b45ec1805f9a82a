// Shared test helpers: temp dirs, tracker init objects, and the Python with TensorBoard.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TrackerInit } from '@accelerate/core';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix}-`));
}

export function init(loggingDir: string | undefined, project = 'proj', options: Record<string, unknown> = {}, processIndex = 0): TrackerInit {
  return { project, loggingDir, options, processIndex, numProcesses: 1, isMainProcess: processIndex === 0, warn: () => {} };
}

let cached: { python?: string; reason?: string } | undefined;

/** The Python that has TensorBoard: env ACCELERATE_TS_PYTHON, else the repo's .venv-py; or why there is none. */
export function tensorboardPython(): { python?: string; reason?: string } {
  if (cached) return cached;
  const candidates = [process.env.ACCELERATE_TS_PYTHON, join(repoRoot, '.venv-py/bin/python')].filter((p): p is string => !!p);
  for (const py of candidates) {
    if (!existsSync(py)) continue;
    const r = spawnSync(py, ['-c', 'import tensorboard; print(tensorboard.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return (cached = { python: py });
    cached = { reason: `${py} cannot import tensorboard (${(r.stderr || '').trim().split('\n').pop()}); run scripts/setup-python.sh` };
  }
  cached ??= { reason: 'no Python with tensorboard: set ACCELERATE_TS_PYTHON or run scripts/setup-python.sh' };
  if (cached.reason) console.log(`[skip] TensorBoard checks: ${cached.reason}`);
  return cached;
}

/** Run a Python script with the TensorBoard Python; returns parsed JSON from stdout. */
export function runPython(python: string, script: string, args: string[] = []): unknown {
  const r = spawnSync(python, ['-c', script, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' } });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
