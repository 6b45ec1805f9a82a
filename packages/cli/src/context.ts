/**
 * What commands need from the outside world, injectable so tests can run
 * commands in-process with captured output, a fake terminal and scripted
 * answers.
 * @module
 */
import type { Prompter } from './prompter.js';

/** The environment a command runs in. */
export interface CliContext {
  /** Writes to standard output (text includes its own newlines). */
  stdout(text: string): void;
  /** Writes to standard error. */
  stderr(text: string): void;
  /** Environment variables (HF_HOME, ACCELERATE_*, …). */
  env: Readonly<Record<string, string | undefined>>;
  /** Whether standard input is an interactive terminal (needed by `accelerate config`). */
  stdinIsTTY: boolean;
  /** Asks the questionnaire's questions (default: @inquirer/prompts on the terminal). */
  prompter?: Prompter;
  /** Imports an optional package by name (default: dynamic `import()`); lets tests fake backends. */
  importModule?: (name: string) => Promise<unknown>;
  /** Exit code the command wants (0 unless set). */
  exitCode: number;
}

/** A context on the real process (stdout, stderr, env, TTY), with overrides. */
export function processContext(overrides: Partial<CliContext> = {}): CliContext {
  return {
    stdout: (t) => void process.stdout.write(t),
    stderr: (t) => void process.stderr.write(t),
    env: process.env,
    stdinIsTTY: Boolean(process.stdin.isTTY),
    exitCode: 0,
    ...overrides,
  };
}

/** An error whose message is shown to the user as is (no stack), with an exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
