/**
 * `accelerate replay <run.jsonl> --to tensorboard,mlflow`: send a recorded
 * event stream to other trackers, after the run (a tracker that was down, or
 * one added later). Events keep their original time, step and rank.
 * @module
 */
import { existsSync } from 'node:fs';
import { dirname, basename, join, resolve } from 'node:path';
import { readEventLog, type EventLogError, type Tracker, type TrackerClass } from '@accelerate/core';
import { checkTrackerInstance, defaultTrackerRegistry, dispatchEvent } from '@accelerate/core/internal';
import { builtinTrackers } from './builtins.js';

/** Options of {@link replay}. */
export interface ReplayOptions {
  /** Target trackers: names (`'tensorboard,mlflow'` or a list) or tracker objects. */
  to: string | ReadonlyArray<string | Tracker>;
  /**
   * Logging directory for trackers that write files (they write under `<loggingDir>/<project>/`).
   * Default: a new folder `replay` beside the file (`replay-2`, `replay-3`, … when it exists), so a
   * replay never adds a second copy of each point to the run it reads. A folder that would put the
   * output into the run's own folder is refused.
   */
  loggingDir?: string;
  /** Project name. Default: the stream's start event, else the file's folder name. */
  project?: string;
  /** Options per tracker name, as `initTrackers`' `initKwargs`. */
  initKwargs?: Record<string, Record<string, unknown>>;
  /** Where warnings go. Default stderr. */
  warn?: (message: string) => void;
}

/** What {@link replay} did, per tracker. */
export interface ReplayResult {
  /** Events read from the file. */
  events: number;
  /** Lines that were not events (torn writes), skipped. */
  skippedLines: EventLogError[];
  /** Per target: events delivered, and the error that stopped it, if any. */
  trackers: Record<string, { delivered: number; error?: string }>;
  /** The logging directory the file trackers wrote under. */
  loggingDir: string;
}

/** First of `<runDir>/replay`, `replay-2`, … that does not exist yet. */
function freshReplayDir(runDir: string): string {
  for (let n = 1; ; n++) {
    const dir = join(runDir, n === 1 ? 'replay' : `replay-${n}`);
    if (!existsSync(dir)) return dir;
  }
}

function classFor(name: string): TrackerClass {
  const cls = defaultTrackerRegistry.get(name) ?? builtinTrackers[name];
  if (!cls) {
    const valid = [...new Set([...Object.keys(builtinTrackers), ...defaultTrackerRegistry.names()])].filter((n) => n !== 'jsonl');
    throw new Error(`replay: unknown tracker "${name}" in --to; valid names: ${valid.join(', ')}.`);
  }
  return cls;
}

/**
 * Replay the JSONL event stream at `path` into the `to` trackers. A tracker
 * that fails stops receiving events (its error is in the result); the others
 * go on. Throws only for bad arguments (unknown name, missing file).
 */
export async function replay(path: string, options: ReplayOptions): Promise<ReplayResult> {
  const file = resolve(path);
  const { events, errors } = readEventLog(file);
  const start = events.find((e) => e.type === 'start');
  const project = options.project ?? (start?.type === 'start' ? start.project : basename(dirname(file)));
  const runDir = dirname(file);
  // Trackers write to <loggingDir>/<project>; the run's own folder already holds what the run
  // logged (its TensorBoard events, metrics.csv), so replaying there shows every point twice.
  const loggingDir = options.loggingDir !== undefined ? resolve(options.loggingDir) : freshReplayDir(runDir);
  if (resolve(loggingDir, project) === runDir) {
    throw new Error(
      `replay: --logging_dir ${JSON.stringify(options.loggingDir)} with project "${project}" would write into ${runDir}, the run being read, and every point would appear twice; ` +
        `leave --logging_dir out (the default writes to a new folder, ${join(runDir, 'replay')}) or pick another folder.`,
    );
  }
  const rank = start?.rank ?? events[0]?.rank ?? 0;
  const warn = options.warn ?? ((m: string) => process.stderr.write(`WARNING:accelerate.replay:${m}\n`));
  const targets = typeof options.to === 'string' ? options.to.split(',').map((s) => s.trim()).filter(Boolean) : [...options.to];
  if (targets.length === 0) throw new Error('replay: name at least one tracker in --to (e.g. --to tensorboard,mlflow).');

  const built: Array<{ name: string; tracker?: Tracker; error?: string; delivered: number }> = [];
  for (const t of targets) {
    if (typeof t !== 'string') {
      checkTrackerInstance(t);
      built.push({ name: t.name, tracker: t, delivered: 0 });
      continue;
    }
    const cls = classFor(t);
    try {
      const tracker = new cls({ project, loggingDir, options: options.initKwargs?.[t] ?? {}, processIndex: rank, numProcesses: start?.type === 'start' ? (start.numProcesses ?? 1) : 1, isMainProcess: true, warn });
      built.push({ name: t, tracker, delivered: 0 });
    } catch (e) {
      built.push({ name: t, error: (e as Error).message, delivered: 0 });
    }
  }
  const run = async (b: (typeof built)[number], fn: () => unknown) => {
    if (!b.tracker || b.error) return;
    try {
      await fn();
    } catch (e) {
      b.error = (e as Error).message;
      warn(`replay: tracker "${b.name}" failed: ${b.error}; it receives no more events.`);
    }
  };
  for (const b of built) await run(b, () => b.tracker!.start?.());
  for (const event of events) {
    for (const b of built) {
      await run(b, async () => {
        await dispatchEvent(b.tracker!, event);
        b.delivered++;
      });
    }
  }
  for (const b of built) await run(b, () => b.tracker!.finish());
  const trackers: ReplayResult['trackers'] = {};
  for (const b of built) trackers[b.name] = b.error ? { delivered: b.delivered, error: b.error } : { delivered: b.delivered };
  return { events: events.length, skippedLines: errors, trackers, loggingDir };
}
