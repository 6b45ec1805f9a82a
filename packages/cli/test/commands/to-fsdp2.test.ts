// `accelerate to-fsdp2`, run as the CLI runs: Python's conversion (test_cli ToFSDP2Tester) and argument checks.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { runCli } from '../../src/program.js';
import { convertConfigToFsdp2 } from '../../src/commands/to-fsdp2.js';
import type { CliContext } from '../../src/context.js';

let dir: string;
let out: string[];
let err: string[];
let ctx: Partial<CliContext>;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'acc-to-fsdp2-'));
  out = [];
  err = [];
  ctx = { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: { HF_HOME: join(dir, 'hf') }, stdinIsTTY: false };
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const readYaml = (p: string) => parseYaml(readFileSync(p, 'utf8'), { version: '1.1' }) as Record<string, unknown>;

const FSDP1 = `compute_environment: LOCAL_MACHINE
distributed_type: FSDP
# the FSDP settings
fsdp_config:
  fsdp_backward_prefetch: BACKWARD_PRE
  fsdp_use_orig_params: true
  fsdp_sync_module_states: true
  fsdp_forward_prefetch: false
  fsdp_sharding_strategy: FULL_SHARD
  fsdp_offload_params: true
  some_unknown_key: 5
mixed_precision: 'no'
num_processes: 2
`;

describe('accelerate to-fsdp2', () => {
  it('[B59] drops the FSDP1-only keys, maps the strategy to fsdp_reshard_after_forward, keeps the rest, sets fsdp_version 2', async () => {
    const input = join(dir, 'fsdp1.yaml');
    const output = join(dir, 'fsdp2.yaml');
    writeFileSync(input, FSDP1);
    expect(await runCli(['to-fsdp2', '--config_file', input, '--output_file', output], ctx)).toBe(0);
    const converted = readYaml(output);
    expect(converted.fsdp_config).toEqual({ fsdp_reshard_after_forward: true, fsdp_offload_params: true, some_unknown_key: 5, fsdp_version: 2 });
    // Everything else, and the file's comments and quoting, untouched; the input too.
    expect(converted).toMatchObject({ compute_environment: 'LOCAL_MACHINE', distributed_type: 'FSDP', mixed_precision: 'no', num_processes: 2 });
    const text = readFileSync(output, 'utf8');
    expect(text).toContain('# the FSDP settings');
    expect(text).toContain("mixed_precision: 'no'");
    expect(readFileSync(input, 'utf8')).toBe(FSDP1);
    const warnings = err.join('');
    for (const k of ['fsdp_backward_prefetch', 'fsdp_use_orig_params', 'fsdp_sync_module_states']) expect(warnings).toContain(`Argument ${k} has been removed in FSDP2, skipping this key...`);
    expect(warnings).toContain('Argument fsdp_forward_prefetch is not yet implemented in FSDP2, skipping this key...');
    expect(out.join('')).toContain(`FSDP2 config saved at ${output}`);
  });

  it('[B59] a config that already says FSDP2: warning, unchanged', async () => {
    const input = join(dir, 'fsdp2.yaml');
    const text = 'distributed_type: FSDP\nfsdp_config:\n  fsdp_version: 2\n  fsdp_reshard_after_forward: false\n';
    writeFileSync(input, text);
    expect(await runCli(['to-fsdp2', '--config_file', input, '--overwrite'], ctx)).toBe(0);
    expect(err.join('')).toContain('warning: Config already specifies FSDP2, skipping conversion...');
    expect(readFileSync(input, 'utf8')).toBe(text);
    const output = join(dir, 'copy.yaml');
    expect(await runCli(['to-fsdp2', '--config_file', input, '--output_file', output], ctx)).toBe(0);
    expect(readFileSync(output, 'utf8')).toBe(text);
  });

  it.each([
    ['FULL_SHARD', true],
    ['SHARD_GRAD_OP', false],
    ['NO_SHARD', false],
    ['HYBRID_SHARD', true],
    ['HYBRID_SHARD_ZERO2', false],
    [1, true],
    ['2', false],
    ['hybrid_shard', true],
  ] as const)('fsdp_sharding_strategy %j -> fsdp_reshard_after_forward %s', (strategy, reshard) => {
    const r = convertConfigToFsdp2({ fsdp_config: { fsdp_sharding_strategy: strategy, fsdp_version: 1 } });
    expect(r.config.fsdp_config).toEqual({ fsdp_reshard_after_forward: reshard, fsdp_version: 2 });
  });

  it('--overwrite rewrites the input; a JSON file stays JSON', async () => {
    const input = join(dir, 'c.json');
    writeFileSync(input, JSON.stringify({ distributed_type: 'FSDP', fsdp_config: { fsdp_version: 1, fsdp_sharding_strategy: 'SHARD_GRAD_OP', fsdp_state_dict_type: 'SHARDED_STATE_DICT' } }));
    expect(await runCli(['to-fsdp2', '--config-file', input, '--overwrite'], ctx)).toBe(0);
    expect(JSON.parse(readFileSync(input, 'utf8'))).toEqual({
      distributed_type: 'FSDP',
      fsdp_config: { fsdp_version: 2, fsdp_reshard_after_forward: false, fsdp_state_dict_type: 'SHARDED_STATE_DICT' },
    });
  });

  it('argument errors: missing input, no output without --overwrite, existing output without --overwrite', async () => {
    expect(await runCli(['to-fsdp2', '--config_file', join(dir, 'nope.yaml'), '--overwrite'], ctx)).toBe(1);
    expect(err.join('')).toMatch(/accelerate: Config file .*nope\.yaml not found/);
    const input = join(dir, 'in.yaml');
    writeFileSync(input, FSDP1);
    err.length = 0;
    expect(await runCli(['to-fsdp2', '--config_file', input], ctx)).toBe(1);
    expect(err.join('')).toContain('If --overwrite is not set, --output_file must be provided');
    const existing = join(dir, 'exists.yaml');
    writeFileSync(existing, 'x: 1\n');
    err.length = 0;
    expect(await runCli(['to-fsdp2', '--config_file', input, '--output_file', existing], ctx)).toBe(1);
    expect(err.join('')).toContain(`Output file ${existing} already exists and --overwrite is not set`);
    expect(readFileSync(existing, 'utf8')).toBe('x: 1\n');
    expect(await runCli(['to-fsdp2', '--config_file', input, '--output_file', existing, '--overwrite'], ctx)).toBe(0);
    expect(readYaml(existing).fsdp_config).toMatchObject({ fsdp_version: 2, fsdp_reshard_after_forward: true });
    err.length = 0;
    expect(await runCli(['to-fsdp2'], ctx)).toBe(1);
    expect(err.join('')).toContain("required option '--config_file <path>' not specified");
  });

  it('no fsdp_config: nothing to convert; an unknown strategy value is an error naming it', async () => {
    const input = join(dir, 'plain.yaml');
    writeFileSync(input, 'distributed_type: MULTI_GPU\n');
    expect(await runCli(['to-fsdp2', '--config_file', input, '--overwrite'], ctx)).toBe(0);
    expect(out.join('')).toContain('No FSDP config found in the config file, skipping conversion...');
    expect(existsSync(input)).toBe(true);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'fsdp_config:\n  fsdp_sharding_strategy: FULL\n');
    expect(await runCli(['to-fsdp2', '--config_file', bad, '--overwrite'], ctx)).toBe(1);
    expect(err.join('')).toContain('fsdp_config.fsdp_sharding_strategy is "FULL", which is not a sharding strategy');
  });
});
