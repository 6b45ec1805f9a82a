/**
 * The `accelerate` program: commander wiring, flag spelling, error display.
 *
 * Commands live in `commands/*.ts` as plain functions (tests call them
 * directly) plus a `register…Command(program, ctx)` that adds them here.
 * Further commands (`launch`, `test`, …) slot in by adding their register
 * function to {@link COMMANDS}; a command that runs a user script should be
 * marked with {@link markPassThrough} so its script's own flags are left alone.
 * @module
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '@accelerate/core';
import { Command, CommanderError, type Option } from 'commander';
import { registerConfigCommand } from './commands/config.js';
import { registerEnvCommand } from './commands/env.js';
import { registerEstimateMemoryCommand } from './commands/estimate-memory.js';
import { registerCheckpointCommand } from './commands/checkpoint.js';
import { registerLaunchCommand } from './commands/launch.js';
import { registerMergeWeightsCommand } from './commands/merge-weights.js';
import { registerTestCommand } from './commands/test.js';
import { registerToFsdp2Command } from './commands/to-fsdp2.js';
import { registerTrackingCommands } from './commands/tracking.js';
import { CliError, processContext, type CliContext } from './context.js';
import { isPassThrough, markPassThrough } from './pass-through.js';

export { markPassThrough };

/** Adds one command (and its subcommands) to the program. */
export type RegisterCommand = (program: Command, ctx: CliContext) => void;

/** The commands of `accelerate`, in help order. */
export const COMMANDS: RegisterCommand[] = [registerConfigCommand, registerEnvCommand, registerLaunchCommand, registerTestCommand, registerTrackingCommands, registerEstimateMemoryCommand, registerCheckpointCommand, registerMergeWeightsCommand, registerToFsdp2Command];

function cliVersion(): string {
  try {
    const pj = JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { version?: string };
    return pj.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Builds the commander program with every command registered. */
export function createProgram(ctx: CliContext, commands: readonly RegisterCommand[] = COMMANDS): Command {
  const program = new Command('accelerate');
  program
    .description('accelerate-ts: run the same training code on one CPU or many machines.')
    .usage('<command> [options]')
    .version(cliVersion(), '-v, --version', 'Print the accelerate-ts version.')
    .helpOption('-h, --help', 'Show help.')
    .showSuggestionAfterError(true)
    // Options belong to the command they follow (`config default --config_file x` is default's).
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.stdout(s),
      writeErr: (s) => ctx.stderr(s),
    });
  program.addHelpText('after', '\nFlags accept snake_case and kebab-case alike (--config_file or --config-file).');
  for (const register of commands) register(program, ctx);
  // Usage errors as one `accelerate: …` line (see usageErrorLine), not commander's `error: …`;
  // set per command so the line can point at that command's --help.
  const each = (cmd: Command) => {
    cmd.configureOutput({ outputError: (text) => ctx.stderr(usageErrorLine(text, cmd)) });
    for (const sub of cmd.commands as readonly Command[]) each(sub);
  };
  each(program);
  return program;
}

function longFlags(cmd: Command): Map<string, Option> {
  const map = new Map<string, Option>();
  for (let c: Command | null = cmd; c; c = c.parent) {
    for (const o of c.options as readonly Option[]) if (o.long && !map.has(o.long)) map.set(o.long, o);
  }
  return map;
}

/**
 * Rewrites flag spellings to the registered ones, so both `--config_file`
 * and `--config-file` (and `--config-file=x`) work whichever the command
 * declares. Stops at `--` and, for pass-through commands, at the user script.
 */
export function normalizeArgv(program: Command, args: readonly string[]): string[] {
  return walkArgv(program, args).argv;
}

/** {@link normalizeArgv}, also returning the (sub)command the arguments reach. */
function walkArgv(program: Command, args: readonly string[]): { argv: string[]; command: Command } {
  const out = [...args];
  let cmd = program;
  for (let i = 0; i < out.length; i++) {
    const tok = out[i];
    if (tok === '--') break;
    if (tok.startsWith('--')) {
      const eq = tok.indexOf('=');
      const name = eq >= 0 ? tok.slice(0, eq) : tok;
      const flags = longFlags(cmd);
      let opt = flags.get(name);
      if (!opt) {
        for (const variant of [name.replace(/-/g, '_').replace(/^__/, '--'), name.replace(/_/g, '-')]) {
          const found = flags.get(variant);
          if (found) {
            opt = found;
            out[i] = variant + (eq >= 0 ? tok.slice(eq) : '');
            break;
          }
        }
      }
      // Skip the option's value so it is not mistaken for a subcommand.
      if (opt && eq < 0 && opt.required && i + 1 < out.length) i++;
      continue;
    }
    if (tok.startsWith('-')) continue;
    const sub = (cmd.commands as readonly Command[]).find((c) => c.name() === tok || c.aliases().includes(tok));
    if (sub) {
      cmd = sub;
      continue;
    }
    if (isPassThrough(cmd)) break;
  }
  return { argv: out, command: cmd };
}

/** `launch`, `checkpoint inspect`, … for messages; empty for the program itself. */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Commander's usage error (`error: unknown option '--foo'\n(Did you mean --bar?)`) as the one
 * line the README promises: `accelerate: unknown option '--foo' (did you mean --bar?)`, with a
 * pointer to the command's help when there is no suggestion.
 */
export function usageErrorLine(message: string, cmd: Command): string {
  let text = message.trimEnd().replace(/^error:\s*/, '');
  // A flag's own parser wrote the full sentence (field, value, fix): show only that.
  const invalid = /^option '[^']*' argument '[\s\S]*?' is invalid\. ([\s\S]+)$/.exec(text);
  if (invalid) text = invalid[1];
  let suggested = false;
  text = text.replace(/\s*\(Did you mean ([^)]*)\)\s*$/, (_m, s: string) => {
    suggested = true;
    return ` (did you mean ${s})`;
  });
  text = text.replace(/\s*\n\s*/g, ' ').trim();
  if (!suggested && !invalid) {
    const path = commandPath(cmd);
    const help = `accelerate${path ? ` ${path}` : ''} --help`;
    text += `${/[.?!]$/.test(text) ? '' : '.'} See \`${help}\`.`;
  }
  return `accelerate: ${text}\n`;
}

/**
 * Runs `accelerate` with `args` (without the node and script paths) and
 * returns the exit code. Errors are printed as one clear message, never a
 * stack trace: configuration errors, usage errors (commander's own message),
 * and command failures.
 */
export async function runCli(args: readonly string[], overrides: Partial<CliContext> = {}): Promise<number> {
  const ctx = processContext(overrides);
  const program = createProgram(ctx);
  const walked = walkArgv(program, args);
  try {
    await program.parseAsync(walked.argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version: nothing to add.
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return e.exitCode;
      if (e.code === 'commander.help') {
        // No (sub)command named: commander printed the help; say in one line what was missing.
        const path = commandPath(walked.command);
        const subs = (walked.command.commands as readonly Command[]).map((c) => c.name()).filter((n) => n !== 'help');
        ctx.stderr(`accelerate: ${path ? `\`accelerate ${path}\` needs` : 'name'} a command: ${subs.join(', ')} (see the help above).\n`);
        return e.exitCode;
      }
      // Anything else was printed by the command's outputError (createProgram).
      return e.exitCode;
    }
    if (e instanceof ConfigError || e instanceof CliError) {
      ctx.stderr(`accelerate: ${e.message}\n`);
      return e instanceof CliError ? e.exitCode : 1;
    }
    // Ctrl-C inside a prompt.
    if (e instanceof Error && e.name === 'ExitPromptError') {
      ctx.stderr('accelerate: cancelled; nothing was written.\n');
      return 130;
    }
    ctx.stderr(`accelerate: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  return ctx.exitCode;
}
