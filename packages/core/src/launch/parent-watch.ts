/**
 * Noticing that the command which started the launcher is gone.
 *
 * `npx accelerate launch` is npm → `sh -c accelerate …` → node (npm runs bins
 * through a shell). Killing npx with SIGKILL leaves the shell waiting for the
 * launcher, so the launcher's own parent never changes: it has to look one
 * step further and notice that the shell was re-parented (to init or a
 * subreaper) because npm died. The direct parent is watched too (node
 * spawning the launcher itself, or npm without a shell).
 * @module
 */
import { readFileSync } from 'node:fs';

/** What {@link startParentWatch} saw go away. */
export interface ParentGone {
  /** The process that ended. */
  pid: number;
  /** `parent process` or the package runner's name (`npm`, `npx`, `pnpm`, `yarn`). */
  what: string;
}

interface ProcInfo {
  ppid: number;
  comm: string;
  cmdline: string;
}

/** /proc/<pid> facts, or undefined when the process is gone or there is no /proc (not Linux). */
function procInfo(pid: number): ProcInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'.
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined; // a zombie has ended
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    } catch {
      // unreadable (another user): comm is enough
    }
    return { ppid: Number(fields[1]), comm, cmdline };
  } catch {
    return undefined;
  }
}

const SHELLS = new Set(['sh', 'dash', 'bash', 'zsh', 'ash', 'ksh', 'mksh', 'busybox']);
// npm sets its title to "npm exec …"; before that (or for npx) the command line names npm-cli.js / npx-cli.js.
const RUNNER = /^(npm|npx|pnpm|yarn)\b|[/\\](npm|npx|pnpm|yarn)(-cli)?(\.c?js)?(\s|$)/;

function runnerName(info: ProcInfo): string | undefined {
  const m = RUNNER.exec(info.cmdline) ?? RUNNER.exec(info.comm);
  return m ? (m[1] ?? m[2]) : undefined;
}

/**
 * The package runner the launcher runs under through shells, if any: the
 * shell right above the runner (whose re-parenting means the runner died),
 * the runner's pid and its name.
 */
export function findRunnerAbove(parent: number): { shell: number; runner: number; name: string } | undefined {
  let pid = parent;
  // npm → sh → node, and at most a couple of nested shells (sh -c "bash -c …").
  for (let depth = 0; depth < 3; depth++) {
    const info = procInfo(pid);
    if (!info || !SHELLS.has(info.comm)) return undefined;
    const above = procInfo(info.ppid);
    if (!above) return undefined;
    const name = runnerName(above);
    if (name) return { shell: pid, runner: info.ppid, name };
    pid = info.ppid;
  }
  return undefined;
}

/**
 * Polls (on an unref'd timer) for the end of the launcher's parent, and of the
 * package runner (npx/npm/pnpm/yarn) above it through shells; calls `onGone`
 * once. Returns a stop function.
 */
export function startParentWatch(onGone: (gone: ParentGone) => void, intervalMs = 500): () => void {
  const parent = process.ppid;
  if (parent <= 1) return () => {};
  const runner = findRunnerAbove(parent);
  const timer = setInterval(() => {
    let gone: ParentGone | undefined;
    if (process.ppid !== parent) gone = { pid: parent, what: 'parent process' };
    else if (runner && procInfo(runner.shell)?.ppid !== runner.runner) gone = { pid: runner.runner, what: runner.name };
    if (!gone) return;
    clearInterval(timer);
    onGone(gone);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
