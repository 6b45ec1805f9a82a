/**
 * Running the ranks of one machine: spawn them, show their output with a
 * `[rank N]` prefix (whole lines only), stop the others as soon as one fails,
 * pass Ctrl-C / SIGTERM on to every rank, and leave no process behind.
 *
 * Each rank is started as the leader of its own process group, so a signal
 * sent to the group reaches the rank and everything it started. Stopping is
 * SIGTERM first, then SIGKILL after a grace period.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { parseTee, type TeeStreams } from './args.js';
import { startParentWatch } from './parent-watch.js';

/** Writes, ignoring a closed stream: the terminal or pipe may have gone with the parent. */
function safeWrite(write: (t: string) => void, text: string): void {
  try {
    write(text);
  } catch {
    // nobody is reading any more
  }
}

/** One process to start. */
export interface RankProcessSpec {
  /** Global rank (used in prefixes and messages). */
  readonly rank: number;
  readonly localRank: number;
  readonly command: string;
  readonly args: readonly string[];
  /** The full environment of the process. */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd?: string;
}

/** Options of {@link superviseRanks}. */
export interface SuperviseOptions {
  /** Where ranks' standard output goes (default: this process's stdout). */
  stdout?: (text: string) => void;
  /** Where ranks' standard error and the launcher's messages go (default: this process's stderr). */
  stderr?: (text: string) => void;
  /** Prefix every line with `[rank N] ` (default true). */
  prefix?: boolean;
  /** Folder for per-rank log files `rank_<N>/stdout.log` and `stderr.log`. */
  logDir?: string;
  /** Which streams go to the log files (see `--tee`); default `3` (both) when `logDir` is set. */
  tee?: string;
  /** Time between SIGTERM and SIGKILL when stopping ranks (default 5000 ms). */
  gracePeriodMs?: number;
  /** Pass SIGINT, SIGTERM and SIGHUP received by this process on to every rank (default true). */
  forwardSignals?: boolean;
  /** Open an IPC channel to each rank (node ranks only) and receive its messages. */
  onMessage?: (rank: number, message: unknown) => void;
  /** Called once a rank has a pid. */
  onSpawn?: (rank: number, pid: number) => void;
  /** Lines of each rank's stderr kept for the failure summary (default 20). */
  tailLines?: number;
  /** Shorter failure summary (the failing rank only). */
  quiet?: boolean;
  /** Name used in messages (default `accelerate launch`). */
  label?: string;
}

/** How one rank ended. */
export interface RankOutcome {
  readonly rank: number;
  readonly localRank: number;
  readonly pid: number | undefined;
  /** Exit code, or null when ended by a signal. */
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** True when the launcher stopped it (because another rank failed or the launcher was interrupted). */
  readonly stoppedByLauncher: boolean;
  /** The last lines it wrote to stderr. */
  readonly stderrTail: readonly string[];
  /** Set when the process could not be started. */
  readonly spawnError?: string;
  readonly durationMs: number;
}

/** The result of {@link superviseRanks}. */
export interface SupervisionResult {
  /** Every rank exited with code 0. */
  readonly ok: boolean;
  /** What the launcher should exit with: 0, the failing rank's code, or 128 + signal number. */
  readonly exitCode: number;
  readonly ranks: readonly RankOutcome[];
  /** The first rank that failed on its own (the root cause). */
  readonly failed: RankOutcome | undefined;
  /** The signal that interrupted the launcher, if any. */
  readonly interrupted: NodeJS.Signals | undefined;
  /** A human-readable account of what failed (empty when ok). */
  readonly summary: string;
}

const FORWARDED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const MAX_PARTIAL_LINE = 64 * 1024;

/** Splits a byte stream into whole lines; a very long unterminated line is emitted in pieces. */
class LineSplitter {
  private partial = '';
  private readonly decoder = new TextDecoder();
  constructor(private readonly emit: (line: string) => void) {}
  push(chunk: Buffer): void {
    const text = this.partial + this.decoder.decode(chunk, { stream: true });
    const lines = text.split('\n');
    this.partial = lines.pop()!;
    for (const line of lines) this.emit(line);
    if (this.partial.length > MAX_PARTIAL_LINE) {
      this.emit(this.partial);
      this.partial = '';
    }
  }
  end(): void {
    const rest = this.partial + this.decoder.decode();
    this.partial = '';
    if (rest.length > 0) this.emit(rest);
  }
}

function signalNumber(sig: NodeJS.Signals): number {
  return (constants.signals as Record<string, number>)[sig] ?? 15;
}

/** Signal a rank's whole process group (falls back to the process alone). */
function signalGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    if (process.platform !== 'win32') {
      process.kill(-child.pid, sig);
      return;
    }
  } catch {
    // group already gone
  }
  try {
    child.kill(sig);
  } catch {
    // already exited
  }
}

function groupAlive(pid: number | undefined): boolean {
  if (pid === undefined || process.platform === 'win32') return false;
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Starts every process of `specs`, streams their output, and resolves once
 * all of them ended (it never rejects). The first rank that exits with a
 * non-zero code or a signal makes the launcher stop the others (SIGTERM,
 * then SIGKILL after the grace period); the result names it with its code or
 * signal and its last stderr lines. Signals sent to this process reach every
 * rank's process group. Processes a rank left behind in its group are ended
 * too, so nothing survives the launch.
 */
export function superviseRanks(specs: readonly RankProcessSpec[], options: SuperviseOptions = {}): Promise<SupervisionResult> {
  const writeOut = options.stdout ?? ((t: string) => void process.stdout.write(t));
  const writeErr = options.stderr ?? ((t: string) => void process.stderr.write(t));
  const prefix = options.prefix ?? true;
  const grace = options.gracePeriodMs ?? 5000;
  const tailLines = options.tailLines ?? 20;
  const label = options.label ?? 'accelerate launch';
  const teeOf = options.logDir ? parseTee(options.tee ?? '3') : () => 0 as TeeStreams;
  const started = Date.now();

  interface Running {
    spec: RankProcessSpec;
    child: ChildProcess;
    exited: boolean;
    closed: Promise<void>;
    outcome?: RankOutcome;
    tail: string[];
    stopped: boolean;
    spawnError?: string;
    logs: WriteStream[];
  }

  return new Promise<SupervisionResult>((resolveAll) => {
    let failed: Running | undefined;
    let interrupted: NodeJS.Signals | undefined;
    let stopping = false;
    let killTimer: NodeJS.Timeout | undefined;
    const running: Running[] = [];

    const stopAll = (sig: NodeJS.Signals) => {
      for (const r of running) {
        if (r.exited) continue;
        r.stopped = true;
        signalGroup(r.child, sig);
      }
      if (sig !== 'SIGKILL' && !killTimer) {
        killTimer = setTimeout(() => stopAll('SIGKILL'), grace);
      }
      stopping = true;
    };

    const onSignal = (sig: NodeJS.Signals) => {
      if (interrupted || stopping) {
        // A second Ctrl-C: no more patience.
        stopAll('SIGKILL');
        interrupted ??= sig;
        return;
      }
      interrupted = sig;
      writeErr(`${label}: received ${sig}, stopping ${running.filter((r) => !r.exited).length} rank(s)\n`);
      stopAll(sig);
    };
    const forward = options.forwardSignals ?? true;
    if (forward) for (const s of FORWARDED) process.on(s, onSignal);
    // `npx accelerate launch` puts npm (and a shell) between the user and this process, and npm
    // does not pass SIGTERM on, nor can anything pass SIGKILL on: when the parent, or the npm
    // above it, goes away, stop the ranks as if SIGTERM had arrived.
    const stopParentWatch = forward
      ? startParentWatch((gone) => {
          if (interrupted || stopping) return;
          interrupted = 'SIGTERM';
          const who = gone.what === 'parent process' ? `the parent process (pid ${gone.pid}, e.g. npx)` : `the process that started it (${gone.what}, pid ${gone.pid})`;
          safeWrite(writeErr, `${label}: ${who} is gone, stopping ${running.filter((r) => !r.exited).length} rank(s)\n`);
          stopAll('SIGTERM');
        })
      : undefined;

    for (const spec of specs) {
      const stdio: ('ignore' | 'pipe' | 'ipc')[] = ['ignore', 'pipe', 'pipe'];
      if (options.onMessage) stdio.push('ipc');
      const child = spawn(spec.command, [...spec.args], {
        env: spec.env as NodeJS.ProcessEnv,
        cwd: spec.cwd,
        stdio,
        detached: process.platform !== 'win32',
        serialization: options.onMessage ? 'advanced' : 'json',
      });
      const r: Running = { spec, child, exited: false, closed: Promise.resolve(), tail: [], stopped: false, logs: [] };
      running.push(r);
      if (child.pid !== undefined) options.onSpawn?.(spec.rank, child.pid);
      const tee = teeOf(spec.localRank);
      const openLog = (name: string) => {
        const dir = join(options.logDir!, `rank_${spec.rank}`);
        mkdirSync(dir, { recursive: true });
        const s = createWriteStream(join(dir, name));
        r.logs.push(s);
        return s;
      };
      const outLog = tee === 1 || tee === 3 ? openLog('stdout.log') : undefined;
      const errLog = tee === 2 || tee === 3 ? openLog('stderr.log') : undefined;
      const tag = prefix ? `[rank ${spec.rank}] ` : '';
      const outLines = new LineSplitter((line) => {
        writeOut(`${tag}${line}\n`);
        outLog?.write(`${line}\n`);
      });
      const errLines = new LineSplitter((line) => {
        writeErr(`${tag}${line}\n`);
        errLog?.write(`${line}\n`);
        r.tail.push(line);
        if (r.tail.length > tailLines) r.tail.shift();
      });
      const streamDone = (s: NodeJS.ReadableStream | null, splitter: LineSplitter) =>
        new Promise<void>((done) => {
          if (!s) return done();
          s.on('data', (d: Buffer) => splitter.push(d));
          s.on('end', () => {
            splitter.end();
            done();
          });
          s.on('close', () => {
            splitter.end();
            done();
          });
          s.on('error', () => done());
        });
      r.closed = Promise.all([streamDone(child.stdout, outLines), streamDone(child.stderr, errLines)]).then(() => undefined);
      if (options.onMessage) child.on('message', (m) => options.onMessage!(spec.rank, m));
      child.on('error', (e) => {
        // Spawning failed (e.g. command not found): exit will not come.
        if (r.exited) return;
        r.spawnError = e.message;
        finish(r, null, null);
      });
      child.on('exit', (code, signal) => finish(r, code, signal));
    }

    let settled = false;
    function finish(r: Running, code: number | null, signal: NodeJS.Signals | null) {
      if (r.exited) return;
      r.exited = true;
      const exitCode = r.spawnError ? 127 : code;
      r.outcome = {
        rank: r.spec.rank,
        localRank: r.spec.localRank,
        pid: r.child.pid,
        exitCode,
        signal,
        stoppedByLauncher: r.stopped,
        stderrTail: r.tail,
        spawnError: r.spawnError,
        durationMs: Date.now() - started,
      };
      const bad = exitCode !== 0 || signal !== null;
      if (bad && !r.stopped && !failed && !interrupted) {
        failed = r;
        const others = running.filter((x) => !x.exited).length;
        if (others > 0) {
          writeErr(`${label}: rank ${r.spec.rank} ${describeEnd(r.outcome)}; stopping the other ${others} rank(s)\n`);
        }
        stopAll('SIGTERM');
      }
      if (running.every((x) => x.exited)) void complete();
    }

    async function complete() {
      if (settled) return;
      settled = true;
      if (killTimer) clearTimeout(killTimer);
      // End whatever the ranks left running in their process groups.
      const leftovers = running.filter((r) => groupAlive(r.child.pid));
      for (const r of leftovers) signalGroup(r.child, 'SIGTERM');
      if (leftovers.length > 0) {
        const deadline = Date.now() + grace;
        while (Date.now() < deadline && leftovers.some((r) => groupAlive(r.child.pid))) await sleep(50);
        for (const r of leftovers) if (groupAlive(r.child.pid)) signalGroup(r.child, 'SIGKILL');
      }
      // Output still in the pipes; do not wait forever for a descendant holding them open.
      // The fallback timer is cleared so it does not keep the launcher alive for 2 s after a clean exit.
      let pipeTimer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(running.map((r) => r.closed)),
        new Promise<void>((r) => (pipeTimer = setTimeout(r, 2000))),
      ]);
      clearTimeout(pipeTimer);
      for (const r of running) {
        r.child.stdout?.destroy();
        r.child.stderr?.destroy();
      }
      // Log files are complete (flushed and closed) when the launch returns, so callers can read them at once.
      await Promise.all(running.flatMap((r) => r.logs.map((l) => new Promise<void>((done) => (l.closed ? done() : l.end(() => done()))))));
      if (forward) for (const s of FORWARDED) process.off(s, onSignal);
      stopParentWatch?.();
      const ranks = running.map((r) => r.outcome!).sort((a, b) => a.rank - b.rank);
      const ok = !failed && !interrupted && ranks.every((o) => o.exitCode === 0);
      let exitCode = 0;
      if (interrupted) exitCode = 128 + signalNumber(interrupted);
      else if (failed) {
        const o = failed.outcome!;
        exitCode = o.exitCode !== null && o.exitCode > 0 && o.exitCode < 256 ? o.exitCode : o.signal ? 128 + signalNumber(o.signal) : 1;
      } else if (!ok) exitCode = 1;
      const result: SupervisionResult = {
        ok,
        exitCode,
        ranks,
        failed: failed?.outcome,
        interrupted,
        summary: '',
      };
      resolveAll({ ...result, summary: ok ? '' : formatFailureSummary(result, { label, quiet: options.quiet }) });
    }
  });
}

/** "exited with code 3", "was killed by SIGSEGV", "could not start: …". */
export function describeEnd(o: RankOutcome): string {
  if (o.spawnError) return `could not start: ${o.spawnError}`;
  if (o.signal) return `was ended by ${o.signal}`;
  return `exited with code ${o.exitCode}`;
}

/**
 * The failure report printed by the launcher: which rank failed first, how
 * (exit code or signal), its last stderr lines, and what happened to the
 * other ranks.
 */
export function formatFailureSummary(result: SupervisionResult, options: { label?: string; quiet?: boolean } = {}): string {
  const label = options.label ?? 'accelerate launch';
  const lines: string[] = [];
  const f = result.failed;
  if (result.interrupted) {
    lines.push(`${label}: interrupted by ${result.interrupted}; every rank was stopped.`);
  } else if (f) {
    lines.push(`${label}: rank ${f.rank} ${describeEnd(f)} after ${(f.durationMs / 1000).toFixed(1)} s.`);
  } else {
    lines.push(`${label}: the launch failed.`);
  }
  if (!options.quiet) {
    for (const o of result.ranks) {
      if (o === f) continue;
      const how = o.stoppedByLauncher ? `stopped by the launcher (${describeEnd(o)})` : describeEnd(o);
      lines.push(`  rank ${o.rank}: ${how}`);
    }
  }
  if (f) {
    if (f.stderrTail.length > 0) {
      lines.push(`Last lines rank ${f.rank} wrote to stderr:`);
      for (const l of f.stderrTail) lines.push(`  | ${l}`);
    } else {
      lines.push(`Rank ${f.rank} wrote nothing to stderr.`);
    }
  }
  return `${lines.join('\n')}\n`;
}
