import { readFileSync } from 'node:fs';

/** True while `pid` runs (a zombie waiting to be reaped counts as gone). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Waits until none of `pids` is alive, or `timeoutMs` passed; returns the survivors. */
export async function waitGone(pids: readonly number[], timeoutMs = 5000): Promise<number[]> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const alive = pids.filter(isAlive);
    if (alive.length === 0 || Date.now() > end) return alive;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Collects text written by a supervisor. */
export function sink(): { write: (t: string) => void; text: () => string } {
  const parts: string[] = [];
  return { write: (t) => void parts.push(t), text: () => parts.join('') };
}
