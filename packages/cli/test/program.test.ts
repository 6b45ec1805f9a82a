import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
    expect(a.err.join('')).toBe("accelerate: unknown command 'confg' (did you mean config?)\n");
    const b = capture();
    expect(await runCli(['env', '--config_fil', 'x'], b.ctx)).toBe(1);
    expect(b.err.join('')).toBe("accelerate: unknown option '--config_fil' (did you mean --config_file?)\n");
  });

  it('every usage error is one `accelerate: …` line with exit code 1 (README: exit codes)', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['launch', '--foo', 'x.js'], /^accelerate: unknown option '--foo'\. See `accelerate launch --help`\.$/],
      [['launch', '--num_procesess', '2', 'x.js'], /^accelerate: unknown option '--num_procesess' \(did you mean --num_processes\?\)$/],
      [['launch'], /^accelerate: missing required argument 'script'\. See `accelerate launch --help`\.$/],
      [['launch', '--num_processes', 'two', 'x.js'], /^accelerate: --num_processes got "two", which is not a whole number; pass e\.g\. --num_processes 2\.$/],
      [['env', '--config_file'], /^accelerate: option '--config_file <path>' argument missing\. See `accelerate env --help`\.$/],
      [['env', 'a', 'b'], /^accelerate: too many arguments for 'env'\. Expected 0 arguments but got 2\. See `accelerate env --help`\.$/],
      [['replay', 'x.jsonl'], /^accelerate: required option '--to <trackers>' not specified\. See `accelerate replay --help`\.$/],
    ];
    for (const [args, line] of cases) {
      const c = capture();
      expect(await runCli(args, c.ctx), args.join(' ')).toBe(1);
      const text = c.err.join('');
      expect(text.endsWith('\n') && text.split('\n').length === 2, `${args.join(' ')}: ${text}`).toBe(true);
      expect(text.trimEnd()).toMatch(line);
      expect(text).not.toMatch(/^error:/m);
    }
    // No command: the help, then one line saying what is missing.
    const none = capture();
    expect(await runCli([], none.ctx)).toBe(1);
    expect(none.err.join('').trimEnd().split('\n').pop()).toMatch(/^accelerate: name a command: config, env, launch, .*\(see the help above\)\.$/);
    const sub = capture();
    expect(await runCli(['checkpoint'], sub.ctx)).toBe(1);
    expect(sub.err.join('').trimEnd().split('\n').pop()).toMatch(/^accelerate: `accelerate checkpoint` needs a command: export-python/);
    // --help and --version stay as they were.
    const help = capture();
    expect(await runCli(['--help'], help.ctx)).toBe(0);
    expect(help.err.join('')).toBe('');
  });

  it('a config file with several bad keys and values, plus bad flags, is reported whole in one run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-many-'));
    const script = join(dir, 'train.js');
    writeFileSync(script, '');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'distributed_type: MULTI_CPU\nnum_procesess: 2\nmixed_precision: fp17\nuse_cpu: maybe\nfsdp_config:\n  fsdp_sharding_strategy: WRONG\n');
    const a = capture();
    expect(await runCli(['launch', '--config_file', bad, '--num_machines', 'x', '--max_restarts', 'y', script], a.ctx)).toBe(1);
    const text = a.err.join('');
    expect(text.startsWith('accelerate: 3 problems with the launch settings:\n')).toBe(true);
    for (const named of ['--num_machines got "x"', '--max_restarts got "y"', 'unknown key "num_procesess" (did you mean "num_processes"?)', '"mixed_precision" has value "fp17"', '"use_cpu" has value "maybe"', '"fsdp_config.fsdp_sharding_strategy" has value "WRONG"']) {
      expect(text).toContain(named);
    }
    // Values that pass the file's own checks but not the launch's: all of them too.
    const combos = join(dir, 'combos.yaml');
    writeFileSync(combos, 'distributed_type: MULTI_CPU\nnum_processes: 2\nnum_machines: 1\nmachine_rank: 3\nmain_process_port: 99999\n');
    const b = capture();
    expect(await runCli(['launch', '--config_file', combos, '--max_restarts', '1', '--tee', '3', script], b.ctx)).toBe(1);
    expect(b.err.join('')).toMatch(
      /^accelerate: 4 problems with the launch settings:\n  - \S+combos\.yaml \(machine_rank\) is 3[^\n]*\n  - \S+combos\.yaml \(main_process_port\) is 99999[^\n]*\n  - --max_restarts is 1[^\n]*\n  - --tee 3 writes rank output to log files[^\n]*\n$/,
    );
  });
});

describe('module structure', () => {
  it('no command imports program.ts (program.ts imports every command: that would be an import cycle)', async () => {
    const { readdirSync } = await import('node:fs');
    const commands = join(import.meta.dirname, '../src/commands');
    for (const name of readdirSync(commands).filter((n) => n.endsWith('.ts'))) {
      expect(readFileSync(join(commands, name), 'utf8'), name).not.toMatch(/from '\.\.\/program\.js'/);
    }
  });
});
