/**
 * `accelerate config`, `accelerate config default`, `accelerate config update`.
 * @module
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  defaultConfigPath,
  loadConfigFile,
  saveConfigFile,
  writeBasicConfig,
  type DetectedDevices,
} from '@accelerate/core';
import type { Command } from 'commander';
import { CliError, type CliContext } from '../context.js';
import { inquirerPrompter } from '../prompter.js';
import { askClusterConfig } from './questionnaire.js';

const CONFIG_FILE_HELP =
  'Path of the config file. Default: default_config.yaml in $HF_HOME/accelerate ' +
  '($HF_HOME defaults to $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface).';

/** Options of `accelerate config`. */
export interface ConfigCommandOptions {
  /** Where to save (default: the default config path). */
  configFile?: string;
}

/**
 * `accelerate config`: asks the questionnaire and saves the answers (YAML,
 * or JSON for a `.json` path). Refuses when standard input is not a
 * terminal, pointing to `accelerate config default`.
 */
export async function runConfigQuestionnaire(ctx: CliContext, options: ConfigCommandOptions = {}): Promise<string> {
  if (!ctx.prompter && !ctx.stdinIsTTY) {
    throw new CliError(
      '`accelerate config` asks questions and needs an interactive terminal, but standard input is not a TTY.\n' +
        'Run `accelerate config default [--config_file PATH] [--mixed_precision no|fp16|bf16]` to write a basic config without questions, ' +
        'or write the YAML file yourself (`accelerate env` shows where it goes).',
    );
  }
  const prompter = ctx.prompter ?? (await inquirerPrompter());
  const config = await askClusterConfig(prompter);
  const file = resolve(options.configFile ?? defaultConfigPath(ctx.env));
  saveConfigFile(config as unknown as Record<string, unknown>, file);
  ctx.stdout(`accelerate configuration saved at ${file}\n`);
  return file;
}

/** Options of `accelerate config default`. */
export interface ConfigDefaultOptions extends ConfigCommandOptions {
  /** `no`, `fp16` or `bf16` (default `no`). */
  mixedPrecision?: string;
  /** Accelerators found on this machine; none means a CPU-only config. */
  devices?: DetectedDevices | null;
}

/**
 * `accelerate config default`: writes a basic config (as Python's
 * `write_basic_config`: CPU-only unless accelerators are detected) without
 * asking anything. An existing file is never overwritten (the message says
 * so). Unlike Python, which writes JSON text into the `.yaml` path, this
 * writes YAML (JSON for a `.json` path).
 *
 * @returns the path written, or null when a file was already there.
 */
export function runConfigDefault(ctx: CliContext, options: ConfigDefaultOptions = {}): string | null {
  const mp = (options.mixedPrecision ?? 'no').toLowerCase();
  if (!['no', 'fp16', 'bf16'].includes(mp)) {
    throw new CliError(`--mixed_precision must be one of: no, fp16, bf16; got ${JSON.stringify(options.mixedPrecision)}`);
  }
  const result = writeBasicConfig({ mixedPrecision: mp, path: options.configFile, devices: options.devices, env: ctx.env });
  if (!result.written) {
    ctx.stdout(
      `Configuration already exists at ${result.path}, will not override. ` +
        'Run `accelerate config` manually, edit the file, or pass a different --config_file.\n',
    );
    return null;
  }
  ctx.stdout(`accelerate configuration saved at ${result.path}\n`);
  return result.path;
}

/**
 * `accelerate config update`: loads the file (converting legacy keys and
 * filling today's defaults) and rewrites it in place.
 */
export function runConfigUpdate(ctx: CliContext, options: ConfigCommandOptions = {}): string {
  const file = resolve(options.configFile ?? defaultConfigPath(ctx.env));
  if (!existsSync(file)) {
    throw new CliError(
      options.configFile === undefined
        ? `There is no config file to update at ${file}; create one with \`accelerate config\` or \`accelerate config default\`.`
        : `The passed config file located at ${file} doesn't exist.`,
    );
  }
  const loaded = loadConfigFile(file);
  for (const w of loaded.warnings) ctx.stderr(`warning: ${w}\n`);
  saveConfigFile(loaded.config as unknown as Record<string, unknown>, file);
  ctx.stdout(`Successfully updated the configuration file at ${file}.\n`);
  return file;
}

/** Registers `config` (with `default` and `update`) on the program. */
export function registerConfigCommand(program: Command, ctx: CliContext): void {
  const config = program
    .command('config')
    .description(
      'Ask a series of questions and save the answers as the configuration of your training setup (run this first on each machine).',
    )
    .option('--config_file <path>', CONFIG_FILE_HELP)
    .action(async (opts: { config_file?: string }) => {
      await runConfigQuestionnaire(ctx, { configFile: opts.config_file });
    });

  config
    .command('default')
    .description('Write a basic config for this machine without asking questions; never overwrites an existing file.')
    .option('--config_file <path>', CONFIG_FILE_HELP)
    .option('--mixed_precision <mode>', 'Mixed precision: no, fp16 or bf16.', 'no')
    .action((opts: { config_file?: string; mixed_precision?: string }) => {
      runConfigDefault(ctx, { configFile: opts.config_file, mixedPrecision: opts.mixed_precision });
    });

  config
    .command('update')
    .description('Rewrite an existing config file with the latest defaults, keeping its settings.')
    .option('--config_file <path>', CONFIG_FILE_HELP)
    .action((opts: { config_file?: string }) => {
      runConfigUpdate(ctx, { configFile: opts.config_file });
    });
}
