/**
 * The built `accelerate` executable, run as a real process with a temporary
 * HF_HOME. Builds core and cli first when dist/ is missing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '../../..');
const BIN = join(ROOT, 'packages/cli/dist/bin.js');

let home: string;

function accelerate(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    input,
    timeout: 30_000,
    env: { PATH: process.env.PATH, HOME: home, HF_HOME: join(home, 'hf') },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'acc-bin-'));
  if (!existsSync(BIN) || !existsSync(join(ROOT, 'packages/core/dist/index.js'))) {
    // tsc emits even when an unrelated file has type errors, so only the output matters here.
    spawnSync('npx', ['tsc', '-p', 'packages/core/tsconfig.json'], { cwd: ROOT, stdio: 'ignore' });
    spawnSync('npx', ['tsc', '-p', 'packages/cli/tsconfig.json'], { cwd: ROOT, stdio: 'ignore' });
  }
}, 120_000);
afterAll(() => {
  rmSync(home, { recursive: true, force: true });
});

describe('the accelerate bin', () => {
  it('starts with a node shebang', () => {
    expect(readFileSync(BIN, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
    // The package build makes it executable; a plain tsc does not.
    expect(statSync(BIN).isFile()).toBe(true);
  });

  it('config default writes the file under HF_HOME, then refuses to overwrite', () => {
    const path = join(home, 'hf/accelerate/default_config.yaml');
    const first = accelerate(['config', 'default', '--mixed-precision', 'fp16']);
    expect(first).toMatchObject({ code: 0, stdout: `accelerate configuration saved at ${path}\n`, stderr: '' });
    expect(readFileSync(path, 'utf8')).toContain("distributed_type: 'NO'\n");
    expect(readFileSync(path, 'utf8')).toContain('mixed_precision: fp16\n');
    const second = accelerate(['config', 'default', '--mixed_precision', 'bf16']);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/^Configuration already exists at .*default_config\.yaml, will not override\./);
    expect(readFileSync(path, 'utf8')).toContain('mixed_precision: fp16\n');
  });

  it('config refuses without a terminal', () => {
    const r = accelerate(['config', '--config_file', join(home, 'x.yaml')], '');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^accelerate: `accelerate config` asks questions and needs an interactive terminal/);
    expect(r.stderr).toContain('accelerate config default');
    expect(existsSync(join(home, 'x.yaml'))).toBe(false);
  });

  it('env prints the report with the config values and resolved settings', () => {
    accelerate(['config', 'default']);
    const r = accelerate(['env']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Copy-and-paste the text below in your GitHub issue');
    expect(r.stdout).toContain(`- Node.js version: ${process.version}`);
    expect(r.stdout).toMatch(/\n- System RAM: \d+\.\d\d GB\n/);
    expect(r.stdout).toMatch(/\n\t- @accelerate\/backend-libtorch: (not installed|installed but failed: .+|\d+\.\d+\.\d+.*)\n/);
    expect(r.stdout).toContain(`- \`Accelerate\` default config: ${join(home, 'hf/accelerate/default_config.yaml')}\n\t- compute_environment: LOCAL_MACHINE\n`);
    expect(r.stdout).toMatch(/\n\tcpu +true +config file +\S+default_config\.yaml \(use_cpu\)\n/);
  });

  it('bad flags and bad config files fail with one clear line, no stack trace', () => {
    const r = accelerate(['config', 'update', '--config_file', join(home, 'nope.yaml')]);
    expect(r).toMatchObject({ code: 1, stdout: '' });
    expect(r.stderr).toBe(`accelerate: The passed config file located at ${join(home, 'nope.yaml')} doesn't exist.\n`);
    const v = accelerate(['--version']);
    expect(v.stdout.trim()).toBe(JSON.parse(readFileSync(join(ROOT, 'packages/cli/package.json'), 'utf8')).version);
  });
});
