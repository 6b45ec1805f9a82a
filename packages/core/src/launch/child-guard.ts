/**
 * Loaded into every node rank by `accelerate launch` (`node --import …`):
 * when the launcher disappears without stopping its ranks (killed with
 * SIGKILL, or crashed), the rank ends itself and the processes it started,
 * instead of waiting forever in a collective as an orphan.
 *
 * It checks twice a second whether the launcher still exists (this process's
 * parent pid changes when it ends), on a timer that never keeps the process
 * alive. It has no other effect.
 * @module
 */
const launcher = process.ppid;

function launcherGone(): boolean {
  // Re-parented: the launcher has ended, even if it is still a zombie its own parent has not reaped
  // (kill(pid, 0) succeeds on a zombie, and a reused pid would look alive).
  if (process.ppid !== launcher) return true;
  try {
    process.kill(launcher, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

if (launcher > 1) {
  const timer = setInterval(() => {
    if (!launcherGone()) return;
    clearInterval(timer);
    try {
      process.stderr.write(`[accelerate] the launcher (pid ${launcher}) is gone; ending rank ${process.env.RANK ?? '?'}\n`);
    } catch {
      // stderr went with the launcher
    }
    try {
      // The launcher starts each rank as the leader of its own process group: end the whole group.
      process.kill(-process.pid, 'SIGTERM');
    } catch {
      process.kill(process.pid, 'SIGTERM');
    }
  }, 500);
  timer.unref();
}

export {};
