// Discovery out of core: backends, trackers and strategy plugins are found through the
// `accelerate` field of their own package.json, so a third-party package in node_modules
// is found exactly as ours are, and core's source names none of them.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BackendRegistry, NoAvailableBackendError } from '../../src/registry/backend-registry.js';
import { discoveryFailures, resetDiscovery, scanAcceleratePackages } from '../../src/registry/discovery.js';
import { discoverBackends } from '../../src/accelerator/backend-discovery.js';
import { loadStrategyPlugin } from '../../src/accelerator/strategy-discovery.js';
import { missingStrategyPackage } from '../../src/accelerator/strategy-selection.js';
import { loadDiscoveredTrackers } from '../../src/tracking/hub.js';
import { setSeed } from '../../src/accelerator/seed.js';

const CORE = join(dirname(fileURLToPath(import.meta.url)), '../..');
// The fake third-party backend builds on core's reference backend, imported by absolute file URL
// (node_modules outside the repository are loaded by Node itself, so the built module).
const CORE_TESTING_URL = pathToFileURL(join(CORE, 'dist/testing/index.js')).href;

let root: string;

function pkg(dir: string, manifest: Record<string, unknown>, files: Record<string, string> = {}): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ version: '1.2.3', type: 'module', ...manifest }, null, 2));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'accel-discovery-'));
  const nm = join(root, 'project/node_modules');
  // A third-party backend, unscoped.
  pkg(
    join(nm, 'acme-accelerate-backend'),
    { name: 'acme-accelerate-backend', accelerate: { backend: { name: 'acme', entry: './entry.js', priority: 50, seed: './seed.cjs' } } },
    {
      'entry.js': `import { ReferenceBackend } from ${JSON.stringify(CORE_TESTING_URL)};
class AcmeBackend extends ReferenceBackend { name = 'acme'; }
export const accelerateBackend = { name: 'acme', priority: 50, factory: { init: async () => new AcmeBackend() } };
`,
      'seed.cjs': `exports.seedIfLoaded = (s) => { (globalThis.__acmeSeeds ??= []).push(s); return true; };\n`,
    },
  );
  // A scoped backend whose entry throws at load (a native library missing).
  pkg(
    join(nm, '@thirdparty/broken-backend'),
    { name: '@thirdparty/broken-backend', accelerate: { backend: { name: 'broken', entry: './entry.js', priority: 60, seed: './seed.cjs' } } },
    {
      'entry.js': `throw new Error('libbroken.so: cannot open shared object file');\n`,
      'seed.cjs': `throw new Error('seed module exploded');\n`,
    },
  );
  // A workspace package: node_modules holds a symlink to it.
  pkg(
    join(root, 'workspace/linked'),
    { name: 'linked-backend', accelerate: { backend: { name: 'linked', entry: './entry.js', priority: 1 } } },
    { 'entry.js': `export const accelerateBackend = { name: 'not-linked', factory: { init: async () => ({}) } };\n` },
  );
  symlinkSync(join(root, 'workspace/linked'), join(nm, 'linked-backend'), 'dir');
  // A malformed field: teaches the shape.
  pkg(join(nm, 'bad-field'), { name: 'bad-field', accelerate: { backend: './dist/index.js' } });
  // Trackers and a strategy plugin.
  pkg(
    join(nm, '@acme/trackers'),
    { name: '@acme/trackers', accelerate: { trackers: './trackers.js' } },
    { 'trackers.js': `export class AcmeTracker { static trackerName = 'acme'; static requiresLoggingDirectory = false; }\nexport const accelerateTrackers = { acme: AcmeTracker };\n` },
  );
  pkg(
    join(nm, 'acme-fsdp'),
    { name: 'acme-fsdp', accelerate: { plugin: { entry: './plugin.js', strategy: 'FSDP' } } },
    { 'plugin.js': `export function acceleratePlugin() { return { name: 'acme-fsdp' }; }\n` },
  );
  pkg(join(nm, 'old-megatron'), { name: 'old-megatron', accelerate: { plugin: { entry: './plugin.js', strategy: 'MEGATRON_LM' } } }, { 'plugin.js': 'export const nothing = 1;\n' });
  // Hundreds of ordinary packages (some scoped, some mentioning "accelerate" in their description).
  for (let i = 0; i < 400; i++) {
    const name = i % 5 === 0 ? `@scope${i % 7}/plain-${i}` : `plain-${i}`;
    pkg(join(nm, name), { name, description: i % 50 === 0 ? 'no "accelerate" field here' : 'ordinary', dependencies: { yaml: '^2' } }, { 'index.js': '' });
  }
  mkdirSync(join(nm, '.bin'), { recursive: true });
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

afterEach(() => {
  resetDiscovery();
});

const from = () => [join(root, 'project/src')];

describe('scanning node_modules for the accelerate field', () => {
  it('finds third-party packages (scoped, symlinked) with their entries made absolute, and only those', () => {
    const found = scanAcceleratePackages({ from: from() });
    expect(found.map((p) => p.name).sort()).toEqual(['@acme/trackers', '@thirdparty/broken-backend', 'acme-accelerate-backend', 'acme-fsdp', 'bad-field', 'linked-backend', 'old-megatron']);
    const acme = found.find((p) => p.name === 'acme-accelerate-backend')!;
    expect(acme.backend).toEqual({ name: 'acme', priority: 50, entry: join(root, 'project/node_modules/acme-accelerate-backend/entry.js'), seed: join(root, 'project/node_modules/acme-accelerate-backend/seed.cjs') });
    expect(found.find((p) => p.name === 'linked-backend')!.dir).toBe(join(root, 'workspace/linked'));
    expect(found.find((p) => p.name === 'bad-field')!.backend).toBeUndefined();
    expect(discoveryFailures()).toContainEqual(expect.objectContaining({ package: 'bad-field', kind: 'backend', reason: expect.stringContaining('"accelerate.backend" must be { "name": "<backend name>", "entry": "./dist/backend-entry.js"') }));
  });

  it('is memoised and fast (hundreds of packages in a few ms)', () => {
    const t0 = performance.now();
    const first = scanAcceleratePackages({ from: from() });
    const cold = performance.now() - t0;
    const t1 = performance.now();
    const again = scanAcceleratePackages({ from: from() });
    const warm = performance.now() - t1;
    expect(again).toBe(first);
    expect(scanAcceleratePackages({ from: from(), refresh: true })).not.toBe(first);
    const t2 = performance.now();
    const repo = scanAcceleratePackages({ from: [CORE], refresh: true });
    const repoMs = performance.now() - t2;
    const repoPackages = readdirSync(join(CORE, '../../node_modules')).length;
    console.log(`[discovery] scan of 407 packages: ${cold.toFixed(1)} ms cold, ${(warm * 1000).toFixed(0)} µs memoised; the repository's node_modules (${repoPackages} top-level entries): ${repoMs.toFixed(1)} ms, found ${repo.map((p) => p.name).join(', ')}`);
    expect(warm).toBeLessThan(1);
    expect(cold).toBeLessThan(250); // a few ms on an idle machine; generous for 2 shared cores
  });
});

describe('backends', () => {
  it('registers discovered backends by priority without importing them; the third-party one resolves', async () => {
    const registry = new BackendRegistry();
    registry.register('mine', { init: async () => ({ name: 'mine' }) as never }, 0);
    const found = discoverBackends({ from: from(), registry });
    expect(found.map((b) => [b.name, b.registered])).toEqual(expect.arrayContaining([['acme', true], ['broken', true], ['linked', true]]));
    expect(registry.names()).toEqual(['broken', 'acme', 'linked', 'mine']);
    expect(registry.list().every((b) => b.state === 'registered')).toBe(true); // nothing imported yet
    const backend = await registry.resolve(['acme']);
    expect(backend.name).toBe('acme');
    // discovering again registers nothing twice, and keeps an explicit registration
    discoverBackends({ from: from(), registry });
    expect(registry.names()).toEqual(['broken', 'acme', 'linked', 'mine']);
  });

  it('a package whose entry throws is one line of the aggregated error, with its reason, and is remembered', async () => {
    const registry = new BackendRegistry();
    discoverBackends({ from: from(), registry });
    const err = await registry.resolve(['broken', 'linked']).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NoAvailableBackendError);
    const message = (err as Error).message;
    expect(message).toMatch(/^no available backend found\. ERR: \[broken\] Error: @thirdparty\/broken-backend is installed but its backend entry .*entry\.js failed to load: libbroken\.so: cannot open shared object file, \[linked\] Error: linked-backend's backend entry calls the backend "not-linked" but its package.json "accelerate.backend.name" says "linked"/);
    expect(discoveryFailures()).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ package: '@thirdparty/broken-backend', kind: 'backend', reason: expect.stringContaining('libbroken.so') }),
        expect.objectContaining({ package: 'linked-backend', kind: 'backend' }),
      ]),
    );
    expect(registry.list().find((b) => b.name === 'broken')).toMatchObject({ state: 'failed', reason: expect.stringContaining('libbroken.so') });
    // with a working candidate, resolution by priority skips the broken one
    expect((await registry.resolve()).name).toBe('acme');
  });
});

describe('trackers and strategy plugins', () => {
  it('loads tracker classes from packages with accelerate.trackers', async () => {
    const trackers = await loadDiscoveredTrackers({ from: from() });
    expect(Object.keys(trackers)).toEqual(['acme']);
    expect(trackers.acme!.trackerName).toBe('acme');
  });

  it('finds the plugin of a distributed_type by the "strategy" of its package.json, and names the package to install otherwise', async () => {
    const fsdp = await loadStrategyPlugin('FSDP', { from: from() });
    expect(fsdp.plugin?.name).toBe('acme-fsdp');
    expect(fsdp.package?.name).toBe('acme-fsdp');
    const ds = await loadStrategyPlugin('DEEPSPEED', { from: from() });
    expect(ds.plugin).toBeUndefined();
    expect(ds.reason).toBe('no installed package declares "strategy": "DEEPSPEED" in the "accelerate.plugin" field of its package.json');
    expect(missingStrategyPackage('DEEPSPEED', ds.reason).message).toContain('npm install @accelerate/plugin-deepspeed');
    const mg = await loadStrategyPlugin('MEGATRON_LM', { from: from() });
    expect(mg.reason).toMatch(/^old-megatron 1\.2\.3 does not export acceleratePlugin\(\)/);
  });
});

describe('setSeed reaches discovered backends through their seed module', () => {
  it('calls each package seed module synchronously; a broken one is reported, not thrown', () => {
    const cwd = process.cwd();
    process.chdir(join(root, 'project'));
    try {
      (globalThis as { __acmeSeeds?: number[] }).__acmeSeeds = [];
      setSeed(11);
      setSeed(12);
      expect((globalThis as { __acmeSeeds?: number[] }).__acmeSeeds).toEqual([11, 12]);
      expect(discoveryFailures()).toContainEqual(expect.objectContaining({ package: '@thirdparty/broken-backend', kind: 'seed', reason: expect.stringContaining('seed module exploded') }));
    } finally {
      process.chdir(cwd);
    }
  });
});

describe("core's source names no downstream package", () => {
  const src = join(CORE, 'src');
  const files: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts')) files.push(p);
    }
  };
  walk(src);

  it('imports no other @accelerate/* package, statically or dynamically', () => {
    const offenders: string[] = [];
    for (const f of files) {
      const text = readFileSync(f, 'utf8');
      const specifiers = [...text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)['"`]([^'"`]+)['"`]/g)].map((m) => m[1]!);
      for (const s of specifiers) if (s.startsWith('@accelerate/') && !s.startsWith('@accelerate/core')) offenders.push(`${relative(src, f)}: ${s}`);
    }
    expect(offenders).toEqual([]);
  });

  it('imports modules by computed specifiers only in the discovery module (and requires seed modules only in setSeed)', () => {
    const dynamic = files.filter((f) => /\bimport\s*\(\s*[^'"`\s)]/.test(readFileSync(f, 'utf8').replace(/^\s*(\*|\/\/).*$/gm, '')));
    expect(dynamic.map((f) => relative(src, f))).toEqual(['registry/discovery.ts']);
  });

  it('names backend, tracker and plugin packages only in hint strings', () => {
    const named = new Map<string, string[]>();
    for (const f of files) {
      const lines = readFileSync(f, 'utf8').split('\n');
      lines.forEach((line, i) => {
        if (/^\s*(\*|\/\/)/.test(line)) return; // comments
        if (/@accelerate\/(backend-|trackers|plugin-)/.test(line)) named.set(`${relative(src, f)}:${i + 1}`, [line.trim()]);
      });
    }
    for (const [where, [line]] of named) {
      // what is allowed: the text of an "npm install …" hint, or a table of such hints
      expect(`${where}: ${line}`).toMatch(/install|Use a backend that has it|_HINT = |(FSDP|DEEPSPEED|MEGATRON_LM): '/i);
    }
    expect(existsSync(join(src, 'registry/discovery.ts'))).toBe(true);
  });
});
