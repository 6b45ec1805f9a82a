/**
 * `accelerate env`: everything a bug report needs — versions, platform,
 * hardware, installed backends, the config file and the resolved settings
 * with their sources.
 * @module
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ConfigError,
  defaultConfigPath,
  formatProvenance,
  discoveryFailures,
  loadConfigFile,
  resolveConfig,
  scanAcceleratePackages,
  type LoadedConfigFile,
  type ResolvedConfig,
} from '@accelerate/core';
import { configToDict, formatSections } from '@accelerate/core/internal';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

/** Whether an optional package can be used. */
export type PackageStatus =
  | { state: 'installed'; version: string; /** What the package runs on, when it says (e.g. `libtorch 1.13.0, CUDA no`). */ runtime?: string }
  | { state: 'not installed' }
  | { state: 'failed'; reason: string };

/** What `accelerate env` found. */
export interface EnvInfo {
  accelerateVersions: Record<string, string>;
  platform: string;
  binLocation: string;
  nodeVersion: string;
  npmVersion: string;
  cpu: { model: string; cores: number };
  memoryBytes: number;
  backends: Record<string, PackageStatus>;
  /** TensorFlow.js engines, when `@accelerate/backend-tfjs` is installed (its `describeTfjsBackends()`). */
  tfjs?: TfjsEnginesInfo;
  config: {
    path: string;
    /** Whether the path was passed with --config_file. */
    passed: boolean;
    status: 'found' | 'not found' | 'invalid';
    /** Values as written back by Python's `to_dict()` (nulls and empty sections dropped). */
    values?: Record<string, unknown>;
    error?: string;
    warnings?: readonly string[];
  };
  resolved?: ResolvedConfig;
  resolveError?: string;
}

/**
 * What `@accelerate/backend-tfjs` reports about its engines (wasm, cpu,
 * tfjs-node, tfjs-node-gpu: absent, broken with the reason, or usable), or why
 * it could not report.
 */
export type TfjsEnginesInfo = { state: 'reported'; report: unknown; text: string } | { state: 'failed'; reason: string };

interface TfjsReporter {
  describeTfjsBackends(): Promise<unknown>;
  formatTfjsBackends(report: unknown): string;
}

/**
 * Asks an installed `@accelerate/backend-tfjs` for its engines through
 * `describeTfjsBackends()` / `formatTfjsBackends()`. The package is imported
 * dynamically (the CLI does not depend on it); call this only when it is installed.
 */
export async function describeTfjsEngines(importModule: (name: string) => Promise<unknown> = (n) => import(n)): Promise<TfjsEnginesInfo> {
  try {
    const mod = (await importModule('@accelerate/backend-tfjs')) as Partial<TfjsReporter>;
    if (typeof mod.describeTfjsBackends !== 'function' || typeof mod.formatTfjsBackends !== 'function') {
      return { state: 'failed', reason: '@accelerate/backend-tfjs exports no describeTfjsBackends(); update it to match @accelerate/cli' };
    }
    const report = await mod.describeTfjsBackends();
    return { state: 'reported', report, text: mod.formatTfjsBackends(report) };
  } catch (e) {
    return { state: 'failed', reason: String((e as Error)?.message ?? e).split('\n')[0] };
  }
}

/** Options of {@link collectEnvInfo}. */
export interface EnvOptions {
  /** `--config_file`. */
  configFile?: string;
  /** Where the `accelerate` bin runs from (default `process.argv[1]`). */
  binLocation?: string;
  /** Skip running `npm --version` (slow); reported as "not checked". */
  skipNpm?: boolean;
}

const localRequire = createRequire(import.meta.url);

function readJson(path: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Version of an installed package, found through its package.json. */
export function packageVersion(name: string): string | undefined {
  try {
    const pj = readJson(localRequire.resolve(`${name}/package.json`));
    if (typeof pj?.version === 'string') return pj.version;
  } catch {
    // The package may not export ./package.json: walk up from its entry point.
  }
  try {
    let dir = dirname(fileURLToPath(import.meta.resolve(name)));
    for (let i = 0; i < 10; i++) {
      const pj = readJson(join(dir, 'package.json'));
      if (pj && pj.name === name && typeof pj.version === 'string') return pj.version;
      const up = dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  } catch {
    // Not resolvable.
  }
  return undefined;
}

/**
 * Tries to import an optional package and tells apart: absent, installed but
 * failing (e.g. a native addon that did not build), and usable.
 */
export async function probePackage(
  name: string,
  importModule: (name: string) => Promise<unknown> = (n) => import(n),
): Promise<PackageStatus> {
  let mod: unknown;
  try {
    mod = await importModule(name);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const message = String(err?.message ?? err);
    const notFound = err?.code === 'ERR_MODULE_NOT_FOUND' || err?.code === 'MODULE_NOT_FOUND';
    // Missing is only "not installed" when the package itself is missing, not one of its dependencies.
    if (notFound && (message.includes(`'${name}'`) || message.includes(`"${name}"`))) return { state: 'not installed' };
    return { state: 'failed', reason: message.split('\n')[0] };
  }
  const runtime = name === '@accelerate/backend-libtorch' ? libtorchRuntime(mod) : undefined;
  return { state: 'installed', version: packageVersion(name) ?? 'unknown version', ...(runtime ? { runtime } : {}) };
}

/** The libtorch backend-libtorch was built against, from its `version` and `cudaAvailable()` exports. */
function libtorchRuntime(mod: unknown): string | undefined {
  const m = mod as { version?: unknown; cudaAvailable?: unknown } | null;
  if (!m || typeof m.version !== 'string') return undefined;
  let cuda = '';
  try {
    if (typeof m.cudaAvailable === 'function') cuda = `, CUDA ${(m.cudaAvailable as () => boolean)() ? 'yes' : 'no'}`;
  } catch {
    // a broken CUDA probe is not worth failing the report for
  }
  return `libtorch ${m.version}${cuda}`;
}

function npmVersion(env: CliContext['env']): string {
  const agent = env.npm_config_user_agent?.match(/\bnpm\/(\S+)/);
  if (agent) return agent[1];
  try {
    return execFileSync('npm', ['--version'], { encoding: 'utf8', timeout: 15_000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'not found';
  }
}

/** Gathers the `accelerate env` information. */
export async function collectEnvInfo(ctx: CliContext, options: EnvOptions = {}): Promise<EnvInfo> {
  const cliPkg = readJson(fileURLToPath(new URL('../../package.json', import.meta.url)));
  const accelerateVersions: Record<string, string> = {
    '@accelerate/cli': typeof cliPkg?.version === 'string' ? cliPkg.version : 'unknown',
    '@accelerate/core': packageVersion('@accelerate/core') ?? 'unknown',
  };
  const backends: Record<string, PackageStatus> = {};
  // Backend packages are the installed ones whose package.json has an `accelerate.backend` field (core's discovery).
  for (const pkg of scanAcceleratePackages()) if (pkg.backend) backends[pkg.name] = await probePackage(pkg.name, ctx.importModule);
  for (const f of discoveryFailures()) if (!(f.package in backends) && f.kind !== 'trackers' && f.kind !== 'plugin') backends[f.package] = { state: 'failed', reason: f.reason };
  const tfjs = backends['@accelerate/backend-tfjs']?.state === 'installed' ? await describeTfjsEngines(ctx.importModule) : undefined;

  const cpus = os.cpus();
  const passed = options.configFile !== undefined;
  const path = resolve(options.configFile ?? defaultConfigPath(ctx.env));
  const config: EnvInfo['config'] = { path, passed, status: 'not found' };
  let loaded: LoadedConfigFile | null = null;
  if (existsSync(path)) {
    try {
      loaded = loadConfigFile(path);
      config.status = 'found';
      config.values = configToDict(loaded.config as unknown as Record<string, unknown>);
      config.warnings = loaded.warnings;
    } catch (e) {
      config.status = 'invalid';
      config.error = (e as Error).message;
    }
  } else if (passed) {
    config.error = 'the file does not exist';
  }

  const info: EnvInfo = {
    accelerateVersions,
    platform: `${os.type()}-${os.release()}-${os.arch()}`,
    binLocation: options.binLocation ?? process.argv[1] ?? 'unknown',
    nodeVersion: process.version,
    npmVersion: options.skipNpm ? 'not checked' : npmVersion(ctx.env),
    cpu: { model: cpus[0]?.model?.trim() || 'unknown', cores: cpus.length },
    memoryBytes: os.totalmem(),
    backends,
    ...(tfjs ? { tfjs } : {}),
    config,
  };
  if (config.status !== 'invalid') {
    try {
      info.resolved = resolveConfig({ env: ctx.env, configFile: loaded ?? false });
    } catch (e) {
      info.resolveError = e instanceof ConfigError ? e.message : String(e);
    }
  }
  return info;
}

function showStatus(s: PackageStatus): string {
  if (s.state === 'installed') return s.runtime ? `${s.version} (${s.runtime})` : s.version;
  if (s.state === 'not installed') return 'not installed';
  return `installed but failed: ${s.reason}`;
}

function showValue(v: unknown): string {
  return typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v);
}

/** The report `accelerate env` prints (Python's layout: `- key: value` lines, config values indented with a tab). */
export function formatEnvInfo(info: EnvInfo): string {
  const versions = Object.entries(info.accelerateVersions)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const lines = [
    '',
    'Copy-and-paste the text below in your GitHub issue',
    '',
    `- \`accelerate-ts\` version: ${info.accelerateVersions['@accelerate/cli']} (${versions})`,
    `- Platform: ${info.platform}`,
    `- \`accelerate\` bin location: ${info.binLocation}`,
    `- Node.js version: ${info.nodeVersion}`,
    `- npm version: ${info.npmVersion}`,
    `- CPU: ${info.cpu.model} (${info.cpu.cores} cores)`,
    `- System RAM: ${(info.memoryBytes / 1024 ** 3).toFixed(2)} GB`,
    '- Backends:',
    ...Object.entries(info.backends).map(([name, s]) => `\t- ${name}: ${showStatus(s)}`),
  ];
  if (info.tfjs?.state === 'reported') {
    const [head, ...engines] = info.tfjs.text.split('\n');
    lines.push(`\t- TensorFlow.js engines: ${head}`, ...engines.map((l) => `\t\t${l.trimStart()}`));
  } else if (info.tfjs) {
    lines.push(`\t- TensorFlow.js engines: not reported: ${info.tfjs.reason}`);
  }
  const c = info.config;
  const label = c.passed ? '- `Accelerate` config passed' : '- `Accelerate` default config';
  if (c.status === 'found') {
    lines.push(`${label}: ${c.path}`);
    for (const [k, v] of Object.entries(c.values ?? {})) lines.push(`\t- ${k}: ${showValue(v)}`);
    for (const w of c.warnings ?? []) lines.push(`\t(warning: ${w})`);
  } else if (c.status === 'invalid') {
    lines.push(`${label}: ${c.path} (invalid)`, ...String(c.error).split('\n').map((l) => `\t${l}`));
  } else {
    lines.push(`${label}: Not found (${c.path}${c.error ? `: ${c.error}` : ''})`);
  }
  if (info.resolved) {
    lines.push('- Resolved settings:', ...formatProvenance(info.resolved).split('\n').map((l) => `\t${l}`));
    // The plugin sections' values that something set (config file, env, flags), each with its source.
    lines.push('- Plugin settings:', ...formatSections(info.resolved).split('\n').map((l) => `\t${l}`));
  } else if (info.resolveError) {
    lines.push('- Resolved settings: error', ...info.resolveError.split('\n').map((l) => `\t${l}`));
  }
  return `${lines.join('\n')}\n`;
}

/** `accelerate env`: prints {@link formatEnvInfo}; exit code 1 when the config cannot be used. */
export async function runEnv(ctx: CliContext, options: EnvOptions = {}): Promise<EnvInfo> {
  const info = await collectEnvInfo(ctx, options);
  ctx.stdout(formatEnvInfo(info));
  if (info.config.status === 'invalid' || info.resolveError || (info.config.passed && info.config.status !== 'found')) {
    ctx.exitCode = 1;
  }
  return info;
}

/** Registers `env` on the program. */
export function registerEnvCommand(program: Command, ctx: CliContext): void {
  program
    .command('env')
    .description('Print the environment information (versions, hardware, backends, configuration) to paste into a bug report.')
    .option('--config_file <path>', 'Config file to show instead of the default one.')
    .action(async (opts: { config_file?: string }) => {
      await runEnv(ctx, { configFile: opts.config_file });
    });
}
