import { afterEach, describe, expect, it } from 'vitest';
import type { Backend, BackendFactory } from '../../src/interfaces/backend.js';
import {
  BackendRegistry,
  listBackends,
  NoAvailableBackendError,
  registerBackend,
  resolveBackend,
  unregisterBackend,
} from '../../src/registry/backend-registry.js';

/** A stand-in backend: the registry only looks at `name` and `version`. */
function fakeBackend(name: string): Backend {
  return { name, version: `${name}-1.0` } as unknown as Backend;
}

/** A factory that counts init() calls and succeeds or fails as told. */
function factory(name: string, fail?: string): BackendFactory & { calls: number } {
  const f = {
    calls: 0,
    async init() {
      f.calls++;
      if (fail !== undefined) throw new Error(fail);
      return fakeBackend(name);
    },
  };
  return f;
}

/** A factory whose init() stays pending until `settle` is called. */
function deferredFactory(name: string) {
  let settle!: (ok: boolean) => void;
  const f = {
    calls: 0,
    init(): Promise<Backend> {
      f.calls++;
      return new Promise<Backend>((resolve, reject) => {
        settle = (ok) => (ok ? resolve(fakeBackend(name)) : reject(new Error(`${name} init failed`)));
      });
    },
    settle: (ok: boolean) => settle(ok),
  };
  return f;
}

describe('BackendRegistry', () => {
  it('resolves the highest priority backend; ties go to the earlier registration', async () => {
    const r = new BackendRegistry();
    r.register('low', factory('low'), 1);
    r.register('first10', factory('first10'), 10);
    r.register('second10', factory('second10'), 10);
    r.register('default', factory('default'));
    expect(r.names()).toEqual(['first10', 'second10', 'low', 'default']);
    expect((await r.resolve()).name).toBe('first10');
  });

  it('calls init() once and returns the same backend on later resolves', async () => {
    const r = new BackendRegistry();
    const f = factory('a');
    r.register('a', f);
    const b1 = await r.resolve();
    const b2 = await r.resolve(['a']);
    expect(b1).toBe(b2);
    expect(f.calls).toBe(1);
  });

  it('concurrent resolves share one in-flight init()', async () => {
    const r = new BackendRegistry();
    const f = deferredFactory('slow');
    r.register('slow', f);
    const p1 = r.resolve();
    const p2 = r.resolve();
    const p3 = r.resolve(['slow']);
    await Promise.resolve();
    expect(r.list()[0].state).toBe('initializing');
    f.settle(true);
    const [b1, b2, b3] = await Promise.all([p1, p2, p3]);
    expect(f.calls).toBe(1);
    expect(b1).toBe(b2);
    expect(b2).toBe(b3);
  });

  it('concurrent resolves of a failing init() all fail after one call, and the failure is not retried', async () => {
    const r = new BackendRegistry();
    const f = deferredFactory('flaky');
    r.register('flaky', f);
    const p1 = r.resolve();
    const p2 = r.resolve();
    await Promise.resolve();
    f.settle(false);
    await expect(p1).rejects.toThrow('no available backend found. ERR: [flaky] Error: flaky init failed');
    await expect(p2).rejects.toThrow('[flaky] Error: flaky init failed');
    await expect(r.resolve()).rejects.toThrow('[flaky] Error: flaky init failed');
    expect(f.calls).toBe(1);
  });

  it('falls back to the next priority when the best backend fails', async () => {
    const r = new BackendRegistry();
    const bad = factory('libtorch', 'cannot find libtorch');
    const good = factory('tfjs');
    r.register('libtorch', bad, 10);
    r.register('tfjs', good, 5);
    expect((await r.resolve()).name).toBe('tfjs');
    expect((await r.resolve()).name).toBe('tfjs');
    expect(bad.calls).toBe(1);
    expect(good.calls).toBe(1);
  });

  it('throws one aggregated error naming every candidate and its error', async () => {
    const r = new BackendRegistry();
    r.register('libtorch', factory('libtorch', 'cannot find libtorch'), 10);
    r.register('tfjs', factory('tfjs', 'backend not installed'), 5);
    const err = await r.resolve().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoAvailableBackendError);
    expect((err as Error).message).toBe(
      'no available backend found. ERR: [libtorch] Error: cannot find libtorch, [tfjs] Error: backend not installed',
    );
    const failures = (err as NoAvailableBackendError).failures;
    expect(failures.map((f) => f.name)).toEqual(['libtorch', 'tfjs']);
    expect((failures[0].error as Error).message).toBe('cannot find libtorch');
  });

  it('tries hints in the given order, only those, and reports unknown hints', async () => {
    const r = new BackendRegistry();
    const a = factory('a');
    const b = factory('b');
    r.register('a', a, 100);
    r.register('b', b, 1);
    expect((await r.resolve(['b', 'a'])).name).toBe('b');
    expect(a.calls).toBe(0);
    await expect(r.resolve(['nope'])).rejects.toThrow(
      'no available backend found. ERR: [nope] not registered (registered: a, b)',
    );
    expect((await r.resolve(['nope', 'a'])).name).toBe('a');
  });

  it('an empty hint list means every registered backend', async () => {
    const r = new BackendRegistry();
    r.register('only', factory('only'));
    expect((await r.resolve([])).name).toBe('only');
  });

  it('with nothing registered, the error says how to install and register a backend', async () => {
    const r = new BackendRegistry();
    await expect(r.resolve()).rejects.toThrow(/no available backend found\. ERR: no backend is registered\. Install a backend package/);
  });

  it('a synchronous throw in init() is remembered like a rejection', async () => {
    const r = new BackendRegistry();
    let calls = 0;
    r.register('sync', {
      init(): Promise<Backend> {
        calls++;
        throw new Error('native addon missing');
      },
    });
    await expect(r.resolve()).rejects.toThrow('[sync] Error: native addon missing');
    await expect(r.resolve()).rejects.toThrow('[sync] Error: native addon missing');
    expect(calls).toBe(1);
    expect(r.list()[0]).toMatchObject({ state: 'failed', reason: 'native addon missing' });
  });

  it('init() resolving to something that is not a backend counts as a failure', async () => {
    const r = new BackendRegistry();
    r.register('broken', { init: async () => undefined as unknown as Backend });
    await expect(r.resolve()).rejects.toThrow('[broken] TypeError: init() of backend "broken" did not return a Backend object (got undefined).');
  });

  it('re-registering: lower priority is ignored, equal or higher replaces with a fresh state, same factory updates priority', async () => {
    const r = new BackendRegistry();
    const first = factory('first', 'broken build');
    r.register('x', first, 5);
    await expect(r.resolve()).rejects.toThrow('broken build');

    const lower = factory('lower');
    expect(r.register('x', lower, 4)).toBe(false);
    await expect(r.resolve()).rejects.toThrow('broken build');
    expect(lower.calls).toBe(0);

    const equal = factory('equal');
    expect(r.register('x', equal, 5)).toBe(true);
    expect(r.list()).toEqual([{ name: 'x', priority: 5, state: 'registered' }]);
    expect((await r.resolve()).name).toBe('equal');

    expect(r.register('x', equal, 1)).toBe(true);
    expect(r.list()).toEqual([{ name: 'x', priority: 1, state: 'ready', version: 'equal-1.0' }]);
    expect(equal.calls).toBe(1);

    const higher = factory('higher');
    expect(r.register('x', higher, 2)).toBe(true);
    expect((await r.resolve()).name).toBe('higher');
  });

  it('list() reports registered, ready and failed backends with reasons, in resolution order', async () => {
    const r = new BackendRegistry();
    r.register('good', factory('good'), 1);
    r.register('bad', factory('bad', 'cannot find libtorch'), 2);
    r.register('unused', factory('unused'), 0);
    await r.resolve(['bad', 'good']);
    const rows = r.list();
    expect(rows.map(({ error, ...rest }) => rest)).toEqual([
      { name: 'bad', priority: 2, state: 'failed', reason: 'cannot find libtorch' },
      { name: 'good', priority: 1, state: 'ready', version: 'good-1.0' },
      { name: 'unused', priority: 0, state: 'registered' },
    ]);
    expect((rows[0].error as Error).message).toBe('cannot find libtorch');
  });

  it('unregister removes a backend', async () => {
    const r = new BackendRegistry();
    r.register('a', factory('a'));
    expect(r.unregister('a')).toBe(true);
    expect(r.unregister('a')).toBe(false);
    expect(r.list()).toEqual([]);
  });

  it('rejects invalid names, factories and priorities with messages naming the value', () => {
    const r = new BackendRegistry();
    expect(() => r.register('', factory('a'))).toThrow('registerBackend: name must be a non-empty string, got "".');
    expect(() => r.register('a', {} as BackendFactory)).toThrow(
      'registerBackend("a"): expected a BackendFactory with an init() method returning a Promise<Backend>, got Object.',
    );
    expect(() => r.register('a', factory('a'), Number.NaN)).toThrow('registerBackend("a"): priority must be a finite number, got NaN.');
  });
});

describe('default registry functions', () => {
  afterEach(() => {
    for (const { name } of listBackends()) unregisterBackend(name);
  });

  it('registerBackend / resolveBackend / listBackends / unregisterBackend share one registry', async () => {
    const f = factory('shared');
    registerBackend('shared', f, 3);
    expect(listBackends()).toEqual([{ name: 'shared', priority: 3, state: 'registered' }]);
    expect((await resolveBackend()).name).toBe('shared');
    expect((await resolveBackend(['shared'])).name).toBe('shared');
    expect(f.calls).toBe(1);
    expect(listBackends()[0].state).toBe('ready');
    expect(unregisterBackend('shared')).toBe(true);
    await expect(resolveBackend()).rejects.toThrow('no backend is registered');
  });
});
