/**
 * Shared helpers of the multi-process tests: run the real `accelerate`
 * command (packages/cli/dist/bin.js, built by `npm run build`) with a clean
 * environment, bounded in time, and read what each rank printed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findFreePort } from '@accelerate/core/internal';

export const ROOT = join(import.meta.dirname, '..');
export const BIN = join(ROOT, 'packages/cli/dist/bin.js');
export const fixture = (name: string) => join(import.meta.dirname, 'fixtures', name);

if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npm run build\` at the repository root first.`);

/** The environment of a launcher: this process's, without any launcher/Accelerate variables, with an empty HF_HOME. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined) continue;
    if (/^(ACCELERATE_|RANK$|WORLD_SIZE$|LOCAL_RANK$|LOCAL_WORLD_SIZE$|GROUP_RANK$|NODE_RANK$|MASTER_ADDR$|MASTER_PORT$|OMPI_|PMI_|MV2_|SLURM_|VITEST|NODE_OPTIONS$)/.test(k)) continue;
    env[k] = v;
  }
  env.HF_HOME = mkdtempSync(join(tmpdir(), 'accelerate-hf-'));
  return { ...env, ...extra };
}

/** What a finished command printed. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** A running `accelerate …` command. */
export interface Running {
  child: ChildProcess;
  done: Promise<RunResult>;
  /** Resolves with stdout once `predicate(stdout)` holds. */
  waitFor(predicate: (stdout: string) => boolean, timeoutMs?: number): Promise<string>;
}

/** Starts `accelerate <args>` (killed with SIGKILL after `timeoutMs`). */
export function startAccelerate(args: readonly string[], options: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Running {
  const t0 = Date.now();
  const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd ?? ROOT, env: options.env ?? cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  child.stdout!.on('data', (d) => {
    stdout += d;
    for (const l of listeners) l();
  });
  child.stderr!.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 50_000);
  const done = new Promise<RunResult>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      for (const l of listeners) l();
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
  });
  const waitFor = (predicate: (s: string) => boolean, timeoutMs = 40_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        if (predicate(stdout)) {
          listeners.delete(check);
          clearTimeout(t);
          resolve(stdout);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          listeners.delete(check);
          clearTimeout(t);
          reject(new Error(`the command ended before the expected output; stdout:\n${stdout}\nstderr:\n${stderr}`));
        }
      };
      const t = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`timed out waiting for output; stdout so far:\n${stdout}\nstderr:\n${stderr}`));
      }, timeoutMs);
      listeners.add(check);
      check();
    });
  return { child, done, waitFor };
}

/** Runs `accelerate <args>` to completion. */
export function runAccelerate(args: readonly string[], options: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  return startAccelerate(args, options).done;
}

/** The `RESULT {json}` line each rank printed (`[rank N] RESULT …`), by rank. */
export function rankResults<T = any>(stdout: string): T[] {
  const out: T[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^\[rank (\d+)\] RESULT (.*)$/.exec(line);
    if (m) out[Number(m[1])] = JSON.parse(m[2]) as T;
  }
  return out;
}

export { isAlive, waitGone } from '../packages/core/test/launch/helpers.js';

export const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** A TCP port free right now (for a fixed --main_process_port shared by several launches). */
export const findFreePortForTests = (): Promise<number> => findFreePort();
