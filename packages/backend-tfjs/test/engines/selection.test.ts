// Engine selection: explicit choices, auto order, the three states of the
// optional tfjs-node peers (absent here; installed-but-broken and usable are
// simulated with stand-in packages on NODE_PATH in a child process).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describeTfjsBackends, formatTfjsBackends, parseTfjsEngine, selectTfjsBackend, tf } from '../../src/index.js';

const SRC = resolve(__dirname, '../../src/index.ts');
const ROOT_MODULES = resolve(__dirname, '../../../../node_modules');

/** Run `code` (ESM, `api` = this package's src) in a child with extra packages on NODE_PATH; returns its JSON output. */
function child(code: string, nodePath: string[] = [], env: Record<string, string> = {}): { out: any; stderr: string } {
  const script = `const api = await import(${JSON.stringify(SRC)}); ${code}`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, NODE_PATH: [...nodePath, ROOT_MODULES].join(':'), ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  const last = r.stdout.trim().split('\n').pop()!;
  return { out: JSON.parse(last), stderr: r.stderr };
}

let fakes: string;
function fakePackage(root: string, name: string, main: string): void {
  const dir = join(root, 'node_modules', ...name.split('/'));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '4.22.0', main: 'index.js' }));
  writeFileSync(join(dir, 'index.js'), main);
}

beforeAll(() => {
  fakes = mkdtempSync(join(tmpdir(), 'tfjs-fakes-'));
  // As after `npm install --ignore-scripts`: the addon was never downloaded.
  fakePackage(join(fakes, 'broken'), '@tensorflow/tfjs-node', `throw new Error('The Node.js native addon module (tfjs_binding.node) can not be found at path: /x/tfjs_binding.node');`);
  // Loads, but against its own tfjs copy: registers nothing with ours.
  fakePackage(join(fakes, 'foreign'), '@tensorflow/tfjs-node', `module.exports = { version: { 'tfjs-node': '4.22.0' } };`);
  // Stand-in for a working tfjs-node: registers a "tensorflow" backend with the shared tfjs.
  fakePackage(
    join(fakes, 'usable'),
    '@tensorflow/tfjs-node',
    `const tf = require('@tensorflow/tfjs'); tf.registerBackend('tensorflow', tf.findBackendFactory('cpu'), 3); module.exports = {};`,
  );
});
afterAll(() => rmSync(fakes, { recursive: true, force: true }));

describe('engine selection in this process', () => {
  it('parseTfjsEngine accepts the engine names and auto, and names them on error', () => {
    expect(parseTfjsEngine(undefined)).toBe('auto');
    expect(parseTfjsEngine(' WASM ')).toBe('wasm');
    expect(parseTfjsEngine('tfjs-node-gpu')).toBe('tfjs-node-gpu');
    expect(() => parseTfjsEngine('webgl')).toThrow(/ACCELERATE_TFJS_BACKEND="webgl".*auto, tfjs-node-gpu, tfjs-node, wasm, cpu/);
  });

  it('an explicit engine that is not installed throws with the reason instead of falling back', async () => {
    await expect(selectTfjsBackend({ engine: 'tfjs-node', env: {} })).rejects.toThrow(/"tfjs-node" was requested.*@tensorflow\/tfjs-node is not installed/);
  });

  it('explicit cpu and wasm switch tfjs backends and are checked', async () => {
    expect(await selectTfjsBackend({ engine: 'cpu', env: {} })).toEqual({ engine: 'cpu', tfBackend: 'cpu', skipped: [] });
    expect(tf.getBackend()).toBe('cpu');
    expect(await selectTfjsBackend({ engine: 'wasm', env: {} })).toEqual({ engine: 'wasm', tfBackend: 'wasm', skipped: [] });
    expect(tf.getBackend()).toBe('wasm');
  });

  it('auto picks wasm when no tfjs-node is installed, passing over absent packages silently', async () => {
    const skips: string[] = [];
    const s = await selectTfjsBackend({ env: {}, onSkip: (e, r) => skips.push(`${e}: ${r}`) });
    expect(s).toEqual({ engine: 'wasm', tfBackend: 'wasm', skipped: [] });
    expect(skips).toEqual([]);
  });

  it('the env variable chooses the engine', async () => {
    const s = await selectTfjsBackend({ env: { ACCELERATE_TFJS_BACKEND: 'cpu' } });
    expect(s.engine).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
  });

  it('describeTfjsBackends reports absent peers, usable wasm and cpu, and the active engine', async () => {
    await selectTfjsBackend({ engine: 'wasm', env: {} });
    const r = await describeTfjsBackends();
    expect(r.active).toBe('wasm');
    expect(r.engines.map((e) => [e.engine, e.state])).toEqual([
      ['tfjs-node-gpu', 'absent'],
      ['tfjs-node', 'absent'],
      ['wasm', 'usable'],
      ['cpu', 'usable'],
    ]);
    expect(r.engines[2].version).toBe('4.22.0');
    const text = formatTfjsBackends(r);
    expect(text).toContain('active engine: wasm');
    expect(text).toMatch(/tfjs-node\s+absent\s+@tensorflow\/tfjs-node — @tensorflow\/tfjs-node is not installed/);
  });
});

describe('optional tfjs-node peers (child processes)', () => {
  it('installed but broken: reported with the loader error; auto warns and uses wasm', () => {
    const { out, stderr } = child(
      `const r = await api.describeTfjsBackends(); const s = await api.selectTfjsBackend({ env: {} }); console.log(JSON.stringify({ node: r.engines[1], s }));`,
      [join(fakes, 'broken', 'node_modules')],
    );
    expect(out.node.state).toBe('broken');
    expect(out.node.version).toBe('4.22.0');
    expect(out.node.reason).toContain('installed but failed to load: The Node.js native addon module (tfjs_binding.node) can not be found');
    expect(out.s.engine).toBe('wasm');
    expect(out.s.skipped).toEqual([{ engine: 'tfjs-node', reason: out.node.reason }]);
    expect(stderr).toContain('tfjs engine tfjs-node not used: @tensorflow/tfjs-node is installed but failed to load');
  });

  it('installed but on another tfjs copy: broken, with what to do', () => {
    const { out } = child(`const r = await api.describeTfjsBackends(); console.log(JSON.stringify(r.engines[1]));`, [join(fakes, 'foreign', 'node_modules')]);
    expect(out.state).toBe('broken');
    expect(out.reason).toMatch(/registered no "tensorflow" backend.*own copy of @tensorflow\/tfjs-core/);
  });

  it('usable: auto picks tfjs-node at run time, and asking for it explicitly works', () => {
    const { out } = child(
      `const a = await api.selectTfjsBackend({ env: {} }); const b = await api.selectTfjsBackend({ env: { ACCELERATE_TFJS_BACKEND: 'tfjs-node' } }); console.log(JSON.stringify({ a, b, active: api.tf.getBackend() }));`,
      [join(fakes, 'usable', 'node_modules')],
    );
    expect(out.a).toEqual({ engine: 'tfjs-node', tfBackend: 'tensorflow', skipped: [] });
    expect(out.b.engine).toBe('tfjs-node');
    expect(out.active).toBe('tensorflow');
  });

  it('wasm failing to initialise under an explicit request throws; under auto it warns and falls back to cpu', () => {
    // A wasm binary that cannot be found makes the backend's init fail, so setBackend('wasm') resolves false.
    const prelude = `(await import('@tensorflow/tfjs-backend-wasm')).setWasmPaths('/nonexistent-dir/');`;
    const { out } = child(
      `${prelude} let err = ''; try { await api.selectTfjsBackend({ engine: 'wasm', env: {} }); } catch (e) { err = e.message; } console.log(JSON.stringify({ err }));`,
    );
    expect(out.err).toMatch(/"wasm" was requested .* cannot be used: tf\.setBackend\('wasm'\) resolved false/);
    const auto = child(`${prelude} const s = await api.selectTfjsBackend({ env: {} }); console.log(JSON.stringify(s));`);
    expect(auto.out.engine).toBe('cpu');
    expect(auto.out.skipped[0].engine).toBe('wasm');
    expect(auto.stderr).toContain('falling back to the pure-JavaScript cpu engine');
  });
});

describe('uncaught errors after the wasm engine is ready (child processes)', () => {
  // The emscripten glue's own process listeners rethrew every uncaught error from inside the
  // glue: ~39 KB of minified source on stderr and exit code 7 instead of a short stack and 1.
  const run = (body: string) =>
    spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', `const api = await import(${JSON.stringify(SRC)}); await api.TfjsBackend.create({ engine: 'wasm' }); ${body}`],
      { env: { ...process.env, NODE_PATH: ROOT_MODULES }, encoding: 'utf8', timeout: 60_000 },
    );
  it.each([
    ['a thrown error', `setTimeout(() => { throw new Error('user-bug-42'); }, 0);`],
    ['an unhandled rejection', `Promise.reject(new Error('user-bug-42'));`],
  ])('%s exits 1 with a normal short stack, no emscripten dump', (_name, body) => {
    const r = run(body);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('Error: user-bug-42');
    expect(r.stderr.length).toBeLessThan(4000);
    expect(r.stderr).not.toMatch(/ExitStatus|WasmBackendModule|GROWABLE_HEAP/);
  });
});
