/**
 * `accelerate replay` and `accelerate dashboard`: thin commands over
 * `@accelerate/trackers`, loaded on demand so the CLI works without it.
 * @module
 */
import type { Command } from 'commander';
import { CliError, type CliContext } from '../context.js';

type TrackersModule = typeof import('@accelerate/trackers');

async function loadTrackers(ctx: CliContext): Promise<TrackersModule> {
  try {
    return (await (ctx.importModule ?? ((n: string) => import(n)))('@accelerate/trackers')) as TrackersModule;
  } catch (e) {
    throw new CliError(`This command needs @accelerate/trackers: npm install @accelerate/trackers (${(e as Error).message})`);
  }
}

/** Replay a JSONL event stream into other trackers; returns per-tracker counts. */
export async function runReplay(ctx: CliContext, file: string, options: { to: string; loggingDir?: string; project?: string }): Promise<void> {
  const { replay } = await loadTrackers(ctx);
  const result = await replay(file, { to: options.to, loggingDir: options.loggingDir, project: options.project });
  ctx.stdout(`replayed ${result.events} events from ${file} into ${result.loggingDir}\n`);
  for (const [name, r] of Object.entries(result.trackers)) {
    ctx.stdout(`- ${name}: ${r.delivered} delivered${r.error ? `, stopped: ${r.error}` : ''}\n`);
    if (r.error) ctx.exitCode = 1;
  }
  if (result.skippedLines.length) ctx.stdout(`(${result.skippedLines.length} torn lines skipped)\n`);
}

/** Serve the live dashboard for `logdir` on 127.0.0.1 until interrupted. */
export async function runDashboard(ctx: CliContext, logdir: string, options: { port?: number }): Promise<() => Promise<void>> {
  const { startDashboard } = await loadTrackers(ctx);
  const d = await startDashboard({ logdir, port: options.port ?? 0 });
  ctx.stdout(`dashboard for ${logdir}: ${d.url}  (Ctrl-C to stop)\n`);
  return () => d.close();
}

/** Register `replay` and `dashboard`. */
export function registerTrackingCommands(program: Command, ctx: CliContext): void {
  program
    .command('replay')
    .description('Replay a run\'s JSONL event stream into other trackers (e.g. after a tracker server was down).')
    .argument('<run.jsonl>', 'Event stream written by the jsonl tracker')
    .requiredOption('--to <trackers>', 'Comma-separated tracker names, e.g. tensorboard,mlflow')
    .option('--logging_dir <dir>', 'Logging directory for file trackers (default: a new folder "replay" beside the file, never the run itself)')
    .option('--project <name>', 'Project name (default: from the stream)')
    .action(async (file: string, opts: { to: string; logging_dir?: string; project?: string }) => {
      await runReplay(ctx, file, { to: opts.to, loggingDir: opts.logging_dir, project: opts.project });
    });
  program
    .command('dashboard')
    .description('Serve a live local dashboard (127.0.0.1 only) of the runs under a logging directory.')
    .argument('[logdir]', 'Folder with JSONL event streams', '.')
    .option('--port <port>', 'Port (default: a free one)', (v) => {
      const port = Number(v);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CliError(`--port must be a whole number from 0 to 65535, got ${JSON.stringify(v)}.`);
      return port;
    })
    .action(async (logdir: string, opts: { port?: number }) => {
      const close = await runDashboard(ctx, logdir, opts);
      await new Promise<void>((resolve) => {
        const stop = () => void close().then(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
