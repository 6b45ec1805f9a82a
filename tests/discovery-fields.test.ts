// Our packages are found by core's discovery exactly as a third party's are: through the
// `accelerate` field of their package.json, whose entries exist and ship in the tarball;
// and importing a backend package registers nothing (no hidden global effect).
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const ROOT = join(import.meta.dirname, '..');

interface PackageJson {
  name: string;
  files?: string[];
  accelerate?: { backend?: { name: string; entry: string; priority?: number; seed?: string }; trackers?: string; plugin?: { entry: string; strategy?: string } };
}

const read = (pkg: string) => JSON.parse(readFileSync(join(ROOT, 'packages', pkg, 'package.json'), 'utf8')) as PackageJson;

/** The source file a `./dist/x.js` entry is built from, or the file itself when it ships as written. */
function sourceOf(pkg: string, entry: string): string {
  const m = /^\.\/dist\/(.+)\.js$/.exec(entry);
  return join(ROOT, 'packages', pkg, m ? `src/${m[1]}.ts` : entry);
}

/** Whether the package's `files` ships `entry` (its first path segment, or the file itself, is listed). */
function shipped(p: PackageJson, entry: string): boolean {
  const rel = entry.replace(/^\.\//, '');
  return (p.files ?? []).some((f) => rel === f || rel.startsWith(`${f.replace(/\/$/, '')}/`));
}

describe('the accelerate field of our packages', () => {
  it.each([
    ['backend-libtorch', { name: 'libtorch', priority: 10 }],
    ['backend-tfjs', { name: 'tfjs', priority: 5 }],
  ])('%s declares its backend, with an entry that exists and ships', (pkg, expected) => {
    const p = read(pkg);
    expect(p.accelerate?.backend).toMatchObject(expected);
    const { entry, seed } = p.accelerate!.backend!;
    expect(existsSync(sourceOf(pkg, entry)), entry).toBe(true);
    expect(shipped(p, entry), `${entry} in files ${JSON.stringify(p.files)}`).toBe(true);
    if (seed) {
      expect(seed).toMatch(/\.cjs$/); // setSeed requires it synchronously
      expect(existsSync(sourceOf(pkg, seed))).toBe(true);
      expect(shipped(p, seed), `${seed} in files ${JSON.stringify(p.files)}`).toBe(true);
    }
  });

  it('trackers declares its tracker entry, which exports the built-in trackers', async () => {
    const p = read('trackers');
    const entry = p.accelerate!.trackers!;
    expect(existsSync(sourceOf('trackers', entry))).toBe(true);
    expect(shipped(p, entry)).toBe(true);
    const mod = (await import(sourceOf('trackers', entry))) as { accelerateTrackers: Record<string, unknown> };
    const { builtinTrackers } = (await import(join(ROOT, 'packages/trackers/src/builtins.ts'))) as { builtinTrackers: Record<string, unknown> };
    expect(mod.accelerateTrackers).toBe(builtinTrackers);
  });

  it("libtorch's seed module seeds nothing while the addon is not loaded, and never loads it", () => {
    const seed = createRequire(import.meta.url)(join(ROOT, 'packages/backend-libtorch/seed-entry.cjs')) as { seedIfLoaded(s: number): boolean };
    const before = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.endsWith('.node'));
    if (before.some((k) => k.endsWith('torch_native.node'))) return; // loaded by an earlier test in this worker
    expect(seed.seedIfLoaded(0)).toBe(false);
    expect(Object.keys(createRequire(import.meta.url).cache).filter((k) => k.endsWith('torch_native.node'))).toEqual([]);
  });

  it('backend packages register nothing when imported (no registerSeedHook / registerBackend at module level)', () => {
    for (const pkg of ['backend-libtorch', 'backend-tfjs']) {
      const index = readFileSync(join(ROOT, 'packages', pkg, 'src/index.ts'), 'utf8');
      const entry = readFileSync(join(ROOT, 'packages', pkg, 'src/backend-entry.ts'), 'utf8');
      for (const text of [index, entry]) {
        expect(text).not.toMatch(/^\s*(registerSeedHook|registerBackend|registerTrackerClass)\s*\(/m);
      }
      // the entry imports nothing heavy at load: the backend module is imported by init()
      expect(entry).not.toMatch(/^import (?!type)/m);
    }
  });
});
