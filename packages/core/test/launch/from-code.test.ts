import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '../../../..');
const script = join(import.meta.dirname, 'fixtures', 'launch-fn.ts');
const env = { ...process.env };
for (const k of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'ACCELERATE_LAUNCH_CALL', 'ACCELERATE_MIXED_PRECISION', 'ACCELERATE_USE_CPU']) delete env[k];

function run(mode: string) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, mode], { cwd: root, env, encoding: 'utf8', timeout: 45_000 });
  const lines = r.stdout.split('\n');
  const parent = (tag: string) => lines.filter((l) => l.startsWith(`${tag} `)).map((l) => l.slice(tag.length + 1));
  return { ...r, lines, parent };
}

describe('launch() and debugLauncher() from code', () => {
  it('re-runs the script per rank, runs fn there with the rank env, and returns the results in rank order to the parent', () => {
    const r = run('results');
    expect(r.status).toBe(0);
    const [results] = r.parent('RESULT');
    const out = JSON.parse(results) as Array<Record<string, unknown>>;
    expect(out.map((o) => [o.rank, o.world, o.localRank, o.mixedPrecision, o.cpu, o.sum, o.typed])).toEqual([
      [0, '2', '0', 'bf16', null, 10, { f32: [0, 0.5] }],
      [1, '2', '1', 'bf16', null, 11, { f32: [1, 0.5] }],
    ]);
    expect(out[0].port).toBe(out[1].port);
    expect(Number(out[0].port)).toBeGreaterThan(0);
    expect(JSON.parse(r.parent('DEBUG')[0])).toEqual([
      { rank: 0, world: '3', cpu: 'true' },
      { rank: 1, world: '3', cpu: 'true' },
      { rank: 2, world: '3', cpu: 'true' },
    ]);
    // One process: runs inline, in the parent.
    const [inline] = r.parent('INLINE');
    const m = /^\["inline pid (\d+)"\] parent pid (\d+)$/.exec(inline);
    expect(m?.[1]).toBe(m?.[2]);
    // Code after launch runs once in the parent; each child ends after its fn.
    expect(r.lines.filter((l) => l === 'after launch (parent)')).toHaveLength(1);
    expect(r.lines.filter((l) => l.includes('after launch (child)'))).toEqual([]);
    expect(r.lines.filter((l) => l === 'top-level code in the parent')).toHaveLength(1);
    expect(r.lines.filter((l) => /^\[rank 1\] top-level code in rank 1$/.test(l)).length).toBeGreaterThanOrEqual(2);
  });

  it('a failing rank stops the others and rejects with LaunchFailedError naming the rank and its error', () => {
    const r = run('fail');
    expect(r.status).toBe(0);
    const [caught] = r.parent('CAUGHT');
    expect(caught).toBe('LaunchFailedError {"rank":1,"code":1,"others":["SIGTERM",null]}');
    const message = JSON.parse(r.parent('MESSAGE')[0]) as string;
    expect(message).toMatch(/^launch\(\): rank 1 exited with code 1 after/);
    expect(message).toContain('  | Error: fn failed on rank 1');
    expect(r.stdout).not.toContain('NOT REACHED');
  });
});
