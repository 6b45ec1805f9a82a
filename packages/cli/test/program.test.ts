import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { createProgram, markPassThrough, normalizeArgv, runCli } from '../src/program.js';
import { processContext, type CliContext } from '../src/context.js';

function capture(): { ctx: Partial<CliContext>; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { ctx: { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: {}, stdinIsTTY: false }, out, err };
}

describe('flag spelling', () => {
  const program = createProgram(processContext({ stdout: () => {}, stderr: () => {} }));

  it('maps kebab-case to the declared snake_case flags, also with =value', () => {
    expect(normalizeArgv(program, ['config', 'default', '--config-file', 'x.yaml', '--mixed-precision=bf16'])).toEqual([
      'config',
      'default',
      '--config_file',
      'x.yaml',
      '--mixed_precision=bf16',
    ]);
  });

  it('leaves unknown flags, values and everything after -- alone', () => {
    expect(normalizeArgv(program, ['env', '--config-file', '--odd-name', '--not-a-flag', '--', '--config-file'])).toEqual([
      'env',
      '--config_file',
      '--odd-name',
      '--not-a-flag',
      '--',
      '--config-file',
    ]);
  });

  it('stops at the user script of a pass-through command (for `launch`)', () => {
    const p = new Command('accelerate').enablePositionalOptions();
    const launch = markPassThrough(p.command('launch').option('--num_processes <n>').argument('<script>').argument('[args...]'));
    launch.action(() => {});
    expect(normalizeArgv(p, ['launch', '--num-processes', '2', 'train.js', '--num-processes', '3'])).toEqual([
      'launch',
      '--num_processes',
      '2',
      'train.js',
      '--num-processes',
      '3',
    ]);
  });
});

describe('program', () => {
  it('prints its version', async () => {
    const { ctx, out } = capture();
    expect(await runCli(['--version'], ctx)).toBe(0);
    const { version } = JSON.parse(readFileSync(join(import.meta.dirname, '../package.json'), 'utf8')) as { version: string };
    expect(out.join('')).toBe(`${version}\n`);
  });

  it('help lists config and env and the spelling rule', async () => {
    const { ctx, out } = capture();
    expect(await runCli(['--help'], ctx)).toBe(0);
    const text = out.join('');
    expect(text).toMatch(/^Usage: accelerate <command> \[options\]/);
    expect(text).toContain('config [options]');
    expect(text).toContain('env [options]');
    expect(text).toContain('Flags accept snake_case and kebab-case alike (--config_file or --config-file).');
  });

  it('subcommand help shows the Python flag names', async () => {
    const { ctx, out } = capture();
    expect(await runCli(['config', 'default', '--help'], ctx)).toBe(0);
    expect(out.join('')).toContain('--config_file <path>');
    expect(out.join('')).toContain('--mixed_precision <mode>');
  });

  it('unknown commands and misspelt flags fail with a suggestion', async () => {
    const a = capture();
    expect(await runCli(['confg'], a.ctx)).toBe(1);
    expect(a.err.join('')).toBe("error: unknown command 'confg'\n(Did you mean config?)\n");
    const b = capture();
    expect(await runCli(['env', '--config_fil', 'x'], b.ctx)).toBe(1);
    expect(b.err.join('')).toBe("error: unknown option '--config_fil'\n(Did you mean --config_file?)\n");
  });
});
