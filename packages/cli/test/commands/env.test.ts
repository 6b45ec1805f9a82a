import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectEnvInfo, formatEnvInfo, probePackage, runEnv } from '../../src/commands/env.js';
import { runCli } from '../../src/program.js';
import type { CliContext } from '../../src/context.js';

const versionOf = (pkg: string) =>
  (JSON.parse(readFileSync(join(import.meta.dirname, `../../../${pkg}/package.json`), 'utf8')) as { version: string }).version;
const CLI_VERSION = versionOf('cli');
const CORE_VERSION = versionOf('core');

let dir: string;
let out: string[];
let ctx: CliContext;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'acc-env-'));
  out = [];
  ctx = {
    stdout: (t) => void out.push(t),
    stderr: () => {},
    env: { HF_HOME: join(dir, 'hf'), npm_config_user_agent: 'npm/10.9.9 node/v20' },
    stdinIsTTY: false,
    exitCode: 0,
    importModule: async (name) => {
      if (name.endsWith('libtorch')) {
        const e = Object.assign(new Error("Cannot find package '@accelerate/backend-libtorch' imported from /x/env.js"), {
          code: 'ERR_MODULE_NOT_FOUND',
        });
        throw e;
      }
      throw new Error('native addon module (tfjs_binding.node) can not be found\n  at stack');
    },
  };
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('backend probing', () => {
  it('tells apart not installed, installed but failing, and installed', async () => {
    const notFound = Object.assign(new Error("Cannot find package 'pkg-x' imported from /y.js"), { code: 'ERR_MODULE_NOT_FOUND' });
    expect(await probePackage('pkg-x', async () => Promise.reject(notFound))).toEqual({ state: 'not installed' });
    // A missing dependency of the package is a failure of the package, not its absence.
    const depMissing = Object.assign(new Error("Cannot find package 'dep' imported from /node_modules/pkg-x/index.js"), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    expect(await probePackage('pkg-x', async () => Promise.reject(depMissing))).toEqual({
      state: 'failed',
      reason: "Cannot find package 'dep' imported from /node_modules/pkg-x/index.js",
    });
    // A real, installed package: its version comes from its package.json.
    expect(await probePackage('yaml')).toMatchObject({ state: 'installed', version: expect.stringMatching(/^2\./) });
    expect(await probePackage('@accelerate/definitely-absent')).toEqual({ state: 'not installed' });
  });

  it('reports the libtorch backend-libtorch runs on (the real package: its version and CUDA flag)', async () => {
    const torch = await import('@accelerate/backend-libtorch');
    const status = await probePackage('@accelerate/backend-libtorch');
    expect(status).toMatchObject({ state: 'installed', runtime: `libtorch ${torch.version}, CUDA ${torch.cudaAvailable() ? 'yes' : 'no'}` });
    expect(torch.version).toMatch(/^\d+\.\d+/);
    // Other packages exporting a `version` are not taken for libtorch.
    expect(await probePackage('yaml', async () => ({ version: '9.9' }))).not.toHaveProperty('runtime');
  });
});

describe('accelerate env', () => {
  it('reports versions, platform, hardware, backends and "Not found" without a config', async () => {
    const info = await collectEnvInfo(ctx, { binLocation: '/usr/bin/accelerate' });
    expect(info.accelerateVersions).toEqual({ '@accelerate/cli': CLI_VERSION, '@accelerate/core': CORE_VERSION });
    expect(info.npmVersion).toBe('10.9.9');
    expect(info.nodeVersion).toBe(process.version);
    expect(info.cpu.cores).toBeGreaterThan(0);
    expect(info.config).toEqual({ path: join(dir, 'hf/accelerate/default_config.yaml'), passed: false, status: 'not found' });
    const lines = formatEnvInfo(info).split('\n');
    expect(lines.slice(0, 4)).toEqual(['', 'Copy-and-paste the text below in your GitHub issue', '', `- \`accelerate-ts\` version: ${CLI_VERSION} (@accelerate/cli ${CLI_VERSION}, @accelerate/core ${CORE_VERSION})`]);
    expect(lines).toContain('- `accelerate` bin location: /usr/bin/accelerate');
    expect(lines).toContain(`- Node.js version: ${process.version}`);
    expect(lines).toContain('\t- @accelerate/backend-libtorch: not installed');
    expect(lines).toContain('\t- @accelerate/backend-tfjs: installed but failed: native addon module (tfjs_binding.node) can not be found');
    expect(lines).toContain(`- \`Accelerate\` default config: Not found (${join(dir, 'hf/accelerate/default_config.yaml')})`);
    expect(lines).toContain('\tmixedPrecision             no       default');
  });

  it('lists the config values as `- key: value` lines and the settings with their sources', async () => {
    const file = join(dir, 'cfg.yaml');
    writeFileSync(file, 'distributed_type: MULTI_CPU\nnum_processes: 2\nmixed_precision: bf16\nfsdp_config: {}\ndynamo_config:\n  dynamo_backend: EAGER\n');
    ctx.env = { ...ctx.env, ACCELERATE_MIXED_PRECISION: 'fp16' };
    expect(await runCli(['env', '--config-file', file], ctx)).toBe(0);
    const text = out.join('');
    expect(text).toContain(
      [
        `- \`Accelerate\` config passed: ${file}`,
        '\t- compute_environment: LOCAL_MACHINE',
        '\t- debug: false',
        '\t- distributed_type: MULTI_CPU',
        '\t- downcast_bf16: false',
        '\t- dynamo_config: {"dynamo_backend":"EAGER"}',
        '\t- enable_cpu_affinity: false',
        '\t- machine_rank: 0',
        '\t- main_training_function: main',
        '\t- mixed_precision: bf16',
        '\t- num_machines: 1',
        '\t- num_processes: 2',
        '\t- rdzv_backend: static',
        '\t- same_network: false',
        '\t- tpu_use_cluster: false',
        '\t- tpu_use_sudo: false',
        '\t- use_cpu: false',
        '- Resolved settings:',
        '\tsetting                    value      source       detail',
        '\tmixedPrecision             fp16       env          ACCELERATE_MIXED_PRECISION',
      ].join('\n'),
    );
    expect(text).toContain(`\tnumProcesses               2          config file  ${file} (num_processes)`);
    expect(text).toContain(`\tdynamoBackend              EAGER      config file  ${file} (dynamo_config.dynamo_backend)`);
  });

  it('lists the plugin settings something set, each with its source', async () => {
    const file = join(dir, 'fsdp.yaml');
    writeFileSync(file, 'distributed_type: FSDP\nnum_processes: 2\nfsdp_config:\n  fsdp_version: 2\n  fsdp_auto_wrap_policy: NO_WRAP\n');
    ctx.env = { ...ctx.env, FSDP_OFFLOAD_PARAMS: 'true' };
    expect(await runCli(['env', '--config_file', file], ctx)).toBe(0);
    const text = out.join('');
    expect(text).toContain('- Plugin settings:\n\tsetting              value    source       detail\n');
    expect(text).toContain(`\tfsdp.version         2        config file  ${file} (fsdp_config.fsdp_version)\n`);
    expect(text).toContain(`\tfsdp.offloadParams   true     env          FSDP_OFFLOAD_PARAMS\n`);
    expect(text).toContain(`\tfsdp.autoWrapPolicy  NO_WRAP  config file  ${file} (fsdp_config.fsdp_auto_wrap_policy)\n`);
  });

  it('finds the default config under HF_HOME', async () => {
    mkdirSync(join(dir, 'hf/accelerate'), { recursive: true });
    writeFileSync(join(dir, 'hf/accelerate/default_config.yaml'), 'distributed_type: NO\n');
    const info = await runEnv(ctx, { skipNpm: true });
    expect(info.config).toMatchObject({ status: 'found', passed: false, values: { distributed_type: 'NO', num_processes: 1 } });
    expect(out.join('')).toContain(`- \`Accelerate\` default config: ${join(dir, 'hf/accelerate/default_config.yaml')}\n\t- compute_environment: LOCAL_MACHINE`);
    expect(ctx.exitCode).toBe(0);
  });

  it('shows why a config is invalid and exits 1; a missing --config_file exits 1', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'distributed_type: MULTI_CPUU\n');
    expect(await runCli(['env', '--config_file', bad], ctx)).toBe(1);
    expect(out.join('')).toContain(
      `- \`Accelerate\` config passed: ${bad} (invalid)\n\tInvalid Accelerate configuration in config file ${bad}: key "distributed_type" has value "MULTI_CPUU", expected one of:`,
    );
    out.length = 0;
    const missing = join(dir, 'missing.yaml');
    expect(await runCli(['env', '--config_file', missing], ctx)).toBe(1);
    expect(out.join('')).toContain(`- \`Accelerate\` config passed: Not found (${missing}: the file does not exist)`);
  });

  it('a malformed ACCELERATE_* variable is reported in the resolved section', async () => {
    ctx.env = { ...ctx.env, ACCELERATE_USE_CPU: 'maybe' };
    expect(await runCli(['env'], ctx)).toBe(1);
    expect(out.join('')).toContain(
      '- Resolved settings: error\n\tInvalid Accelerate configuration in the environment: ACCELERATE_USE_CPU="maybe" is not a boolean',
    );
  });
});

describe('accelerate env: TensorFlow.js engines', () => {
  const tfjsVersion = (JSON.parse(readFileSync(join(import.meta.dirname, '../../../../node_modules/@tensorflow/tfjs/package.json'), 'utf8')) as { version: string }).version;

  it('lists each engine through @accelerate/backend-tfjs (imported at run time) with its state', async () => {
    ctx.importModule = (name) => import(name); // the real packages of this repository
    const info = await collectEnvInfo(ctx, { skipNpm: true });
    expect(info.backends['@accelerate/backend-tfjs']).toMatchObject({ state: 'installed' });
    expect(info.tfjs?.state).toBe('reported');
    const lines = formatEnvInfo(info).split('\n');
    const at = lines.indexOf('\t- @accelerate/backend-tfjs: ' + versionOf('backend-tfjs'));
    expect(at).toBeGreaterThan(0);
    expect(lines[at + 1]).toBe(`\t- TensorFlow.js engines: @tensorflow/tfjs ${tfjsVersion}; active engine: none selected yet`);
    expect(lines[at + 2]).toMatch(/^\t\ttfjs-node-gpu +(absent|broken|usable) +@tensorflow\/tfjs-node-gpu/);
    expect(lines[at + 3]).toMatch(/^\t\ttfjs-node +(absent|broken|usable) +@tensorflow\/tfjs-node\b/);
    expect(lines[at + 4]).toBe(`\t\twasm           usable  @tensorflow/tfjs-backend-wasm@${tfjsVersion}`);
    expect(lines[at + 5]).toBe(`\t\tcpu            usable  @tensorflow/tfjs@${tfjsVersion}`);
  });

  it('says why the engines are not reported when the package cannot describe them', async () => {
    ctx.importModule = async (name) => {
      if (name === '@accelerate/backend-tfjs') {
        return { describeTfjsBackends: async () => Promise.reject(new Error('wasm binary is corrupt\nstack')), formatTfjsBackends: () => '' };
      }
      return import(name);
    };
    const lines = formatEnvInfo(await collectEnvInfo(ctx, { skipNpm: true })).split('\n');
    expect(lines).toContain('\t- TensorFlow.js engines: not reported: wasm binary is corrupt');
  });

  it('prints no engine section when @accelerate/backend-tfjs is not installed or does not load', async () => {
    const info = await collectEnvInfo(ctx, { skipNpm: true }); // the beforeEach importer: tfjs fails to load
    expect(info.tfjs).toBeUndefined();
    expect(formatEnvInfo(info)).not.toContain('TensorFlow.js engines');
  });
});
