import { describe, it, expect } from 'vitest';
import type { LogValue, Tracker } from '../../src/interfaces/tracker.js';
import type { TrackerEvent } from '../../src/tracking/events.js';
import { TrackerHub } from '../../src/tracking/hub.js';
import { BlankTracker, TrackerRegistry, dispatchEvent, type TrackerClass, type TrackerInit } from '../../src/tracking/registry.js';

type Call = [string, ...unknown[]];

/** A method-based tracker that records its calls. */
function makeClass(name: string, opts: { dir?: boolean; mainOnly?: boolean; available?: boolean; calls?: Call[]; behave?: (m: string) => unknown } = {}): TrackerClass & { instances: Array<Tracker & { init: TrackerInit; calls: Call[] }> } {
  const instances: Array<Tracker & { init: TrackerInit; calls: Call[] }> = [];
  class T implements Tracker {
    static readonly trackerName = name;
    static readonly requiresLoggingDirectory = opts.dir ?? false;
    static readonly mainProcessOnly = opts.mainOnly ?? true;
    static isAvailable() {
      return opts.available ?? true;
    }
    static readonly instances = instances;
    readonly name = name;
    readonly requiresLoggingDirectory = opts.dir ?? false;
    readonly mainProcessOnly = opts.mainOnly ?? true;
    readonly tracker = { client: name };
    readonly calls: Call[] = opts.calls ?? [];
    constructor(readonly init: TrackerInit) {
      instances.push(this);
    }
    private rec(m: string, ...a: unknown[]) {
      this.calls.push([`${name}.${m}`, ...a]);
      return opts.behave?.(m);
    }
    start() {
      return this.rec('start') as void;
    }
    storeInitConfiguration(v: Record<string, unknown>) {
      return this.rec('config', v) as void;
    }
    log(v: Record<string, LogValue>, step?: number, o?: Record<string, unknown>) {
      return this.rec('log', v, step, o) as void;
    }
    logText(v: Record<string, string>, step?: number) {
      return this.rec('text', v, step) as void;
    }
    finish() {
      return this.rec('finish') as void;
    }
  }
  return T as unknown as TrackerClass & { instances: typeof instances };
}

/** An event tracker standing in for the JSONL tracker. */
function makeJsonl(events: TrackerEvent[]): TrackerClass {
  class J implements Tracker {
    static readonly trackerName = 'jsonl';
    static readonly requiresLoggingDirectory = true;
    readonly name = 'jsonl';
    readonly requiresLoggingDirectory = true;
    readonly mainProcessOnly = true;
    readonly path: string;
    constructor(init: TrackerInit) {
      this.path = `${init.loggingDir}/${init.project}/events.jsonl`;
    }
    onEvent(e: TrackerEvent) {
      events.push(e);
    }
    storeInitConfiguration() {}
    log() {}
    finish() {}
  }
  return J as unknown as TrackerClass;
}

function setup(extra: Partial<ConstructorParameters<typeof TrackerHub>[0]> = {}, builtins: Record<string, TrackerClass> = {}) {
  const warnings: string[] = [];
  const events: TrackerEvent[] = [];
  let t = 100;
  const hub = new TrackerHub({
    registry: new TrackerRegistry(),
    warn: (m) => warnings.push(m),
    loadBuiltins: async () => ({ jsonl: makeJsonl(events), ...builtins }),
    now: () => t++,
    ...extra,
  });
  return { hub, warnings, events };
}

describe('TrackerHub: logWith resolution', () => {
  it('rejects unknown names with the list of valid ones, and dir-needing trackers without a logging dir', () => {
    expect(() => new TrackerHub({ logWith: 'tensorbord', registry: new TrackerRegistry() })).toThrow(
      /unknown tracker "tensorbord"\. Valid names: all, tensorboard, wandb, comet_ml, mlflow, jsonl, csv/,
    );
    expect(() => new TrackerHub({ logWith: ['aim'], registry: new TrackerRegistry() })).toThrow(/"aim" has no TypeScript tracker: Aim reads TensorBoard logs/);
    expect(() => new TrackerHub({ logWith: ['tensorboard'], registry: new TrackerRegistry() })).toThrow(
      /tracker "tensorboard" writes files and needs a logging directory/,
    );
    expect(() => new TrackerHub({ logWith: [{ name: 'x' } as unknown as Tracker] })).toThrow(/tracker "x" has no boolean requiresLoggingDirectory/);
  });

  it('accepts registered names, classes and instances, de-duplicated, and warns on an empty list', () => {
    const registry = new TrackerRegistry();
    const Mine = makeClass('mine');
    registry.register(Mine);
    const Other = makeClass('other');
    const inst = new (makeClass('inst'))({} as TrackerInit);
    const hub = new TrackerHub({ logWith: ['mine', Other, inst, 'mine', 'jsonl'], loggingDir: '/tmp/x', registry });
    expect(hub.requestedNames).toEqual(['mine', 'other', 'inst', 'jsonl']);
    const warnings: string[] = [];
    new TrackerHub({ logWith: [], warn: (m) => warnings.push(m) });
    expect(warnings).toEqual([expect.stringMatching(/logWith is an empty list, so no tracker will run/)]);
  });

  it('registerTrackerClass checks the class and warns when a name is replaced', () => {
    const registry = new TrackerRegistry();
    const warnings: string[] = [];
    const hub = new TrackerHub({ registry, warn: (m) => warnings.push(m) });
    expect(() => hub.registerTrackerClass(class {} as unknown as TrackerClass)).toThrow(/has no static trackerName/);
    hub.registerTrackerClass(makeClass('mine'));
    hub.registerTrackerClass(makeClass('mine'));
    expect(registry.names()).toEqual(['mine']);
    expect(warnings).toEqual([expect.stringMatching(/a tracker named "mine" was already registered/)]);
  });

  it("'all' adds available built-ins in order, skipping unconfigured ones and dir-needing ones without a dir", async () => {
    const TB = makeClass('tensorboard', { dir: true });
    const WB = makeClass('wandb', { available: false, mainOnly: false });
    const ML = makeClass('mlflow');
    const { hub, warnings } = setup({ logWith: 'all' }, { tensorboard: TB, wandb: WB, mlflow: ML });
    await hub.initTrackers('p');
    expect(hub.trackers.map((t) => t.name)).toEqual(['mlflow']);
    expect(warnings).toEqual([expect.stringMatching(/skipping "tensorboard": it writes files and no logging directory is set/)]);
    const s2 = setup({ logWith: 'all', loggingDir: '/logs' }, { tensorboard: TB, wandb: WB, mlflow: ML });
    await s2.hub.initTrackers('p');
    expect(s2.hub.trackers.map((t) => t.name)).toEqual(['jsonl', 'tensorboard', 'mlflow']);
  });
});

describe('TrackerHub: lifecycle and events', () => {
  it('builds trackers with project, dir and their initKwargs, then start, then config; log fans out sanitized values', async () => {
    const calls: Call[] = [];
    const A = makeClass('a', { calls });
    const { hub, events } = setup({ logWith: [A], loggingDir: '/logs', processIndex: () => 0, numProcesses: () => 2 });
    await hub.initTrackers('proj', { lr: 0.1 }, { a: { entity: 'me' } });
    const a = (A as unknown as { instances: Array<{ init: TrackerInit }> }).instances[0];
    expect(a.init).toMatchObject({ project: 'proj', loggingDir: '/logs', options: { entity: 'me' }, processIndex: 0, numProcesses: 2, isMainProcess: true });
    await hub.log({ loss: 0.5, acc: { train: 1 } }, 3, { a: { commit: true } });
    await hub.logText({ note: 'hi' }, 4);
    await hub.endTraining();
    expect(calls).toEqual([
      ['a.start'],
      ['a.config', { lr: 0.1 }],
      ['a.log', { loss: 0.5, acc: { train: 1 } }, 3, { commit: true }],
      ['a.text', { note: 'hi' }, 4],
      ['a.finish'],
    ]);
    expect(events.map((e) => e.type)).toEqual(['start', 'config', 'metrics', 'text', 'finish']);
    expect(events[0]).toMatchObject({ type: 'start', project: 'proj', numProcesses: 2, version: 1, format: 'accelerate-events', rank: 0 });
    expect(events[2]).toEqual({ type: 'metrics', values: { loss: 0.5, acc: { train: 1 } }, step: 3, kwargs: { a: { commit: true } }, time: 102, rank: 0 });
    expect(hub.eventLogPath).toBeUndefined(); // ended
  });

  it('runs main-process-only trackers on the main process only; getTracker gives a blank one elsewhere', async () => {
    const calls: Call[] = [];
    const Main = makeClass('main', { calls });
    const Every = makeClass('every', { calls, mainOnly: false });
    const { hub } = setup({ logWith: [Main, Every], isMainProcess: () => false, processIndex: () => 1 });
    await hub.initTrackers('p');
    await hub.log({ x: 1 }, 0);
    expect(calls.map((c) => c[0])).toEqual(['every.start', 'every.config', 'every.log']);
    expect(hub.getTracker('main')).toBeInstanceOf(BlankTracker);
    expect((hub.getTracker('every') as Tracker).name).toBe('every');
    expect(hub.getTracker('every', { unwrap: true })).toEqual({ client: 'every' });
    expect(() => hub.getTracker('nope')).toThrow(/no tracker named "nope" in this run\. Running trackers: every, main/);
  });

  it('log is a no-op without trackers, and getTracker says how to get some', async () => {
    const hub = new TrackerHub();
    await hub.log({ loss: 1 });
    expect(() => hub.getTracker('x')).toThrow(/No tracker is running: pass logWith/);
  });
});

describe('TrackerHub: bad input never crashes training', () => {
  it('[bad values] warns once per key, keeps the raw values in the event stream, sends the rest to trackers', async () => {
    const calls: Call[] = [];
    const A = makeClass('a', { calls });
    const { hub, warnings, events } = setup({ logWith: [A], loggingDir: '/logs' });
    await hub.initTrackers('p');
    await hub.log({ loss: NaN, ok: 1, obj: { nested: { deep: 1 } } }, 1);
    await hub.log({ loss: Infinity, ok: 2 }, 2);
    await hub.log({ loss: 3 }, 3.5);
    await hub.log({ loss: 4 }, -1);
    expect(calls.filter((c) => c[0] === 'a.log')).toEqual([
      ['a.log', { ok: 1 }, 1, undefined],
      ['a.log', { ok: 2 }, 2, undefined],
      ['a.log', { loss: 3 }, undefined, undefined],
      ['a.log', { loss: 4 }, undefined, undefined],
    ]);
    expect(warnings).toEqual([
      'log: "loss" is NaN at step 1: trackers take finite numbers, strings, booleans and { name: number } groups, so it is skipped for them; it is kept in the JSONL event stream (/logs/p/events.jsonl). Training continues; this warning is shown once per key.',
      expect.stringMatching(/^log: "obj\/nested" is an object at step 1/),
      'log: step must be a whole number >= 0, got 3.5; the values are logged without a step. Training continues; shown once.',
    ]);
    const metrics = events.filter((e) => e.type === 'metrics') as Array<{ values: Record<string, unknown> }>;
    expect(metrics[0].values.loss).toBeNaN();
    expect(metrics[1].values.loss).toBe(Infinity);
    expect(metrics[0].values.obj).toEqual({ nested: { deep: 1 } });
  });

  it('a tracker that throws is disabled with a warning naming the replay command; others go on', async () => {
    const calls: Call[] = [];
    const Bad = makeClass('bad', { calls, behave: (m) => { if (m === 'log') throw new Error('server down'); } });
    const Good = makeClass('good', { calls });
    const { hub, warnings, events } = setup({ logWith: [Bad, Good], loggingDir: '/logs' });
    await hub.initTrackers('p');
    await hub.log({ x: 1 }, 1);
    await hub.log({ x: 2 }, 2);
    await hub.endTraining();
    expect(calls.map((c) => c[0])).toEqual(['bad.start', 'good.start', 'bad.config', 'good.config', 'bad.log', 'good.log', 'good.log', 'good.finish']);
    expect(warnings).toEqual([
      'Tracker "bad" failed in log (step 1): server down. It is disabled for the rest of the run; training continues. Every event stays in the JSONL stream /logs/p/events.jsonl: send them to it later with `accelerate replay /logs/p/events.jsonl --to bad`.',
    ]);
    expect(hub.disabledTrackers.map((d) => [d.name, d.during, d.error.message])).toEqual([['bad', 'log (step 1)', 'server down']]);
    expect(events.filter((e) => e.type === 'metrics')).toHaveLength(2);
  });

  it('a tracker that rejects or hangs is disabled too; the hub keeps each tracker\'s events in order', async () => {
    const calls: Call[] = [];
    let n = 0;
    const Slow = makeClass('slow', { calls, behave: (m) => (m === 'log' ? new Promise((r) => setTimeout(r, 20 - 5 * n++)) : undefined) });
    const Rejects = makeClass('rejects', { calls, behave: (m) => (m === 'start' ? Promise.reject(new Error('401 Unauthorized')) : undefined) });
    const Hangs = makeClass('hangs', { calls, behave: (m) => (m === 'log' ? new Promise(() => {}) : undefined) });
    const { hub, warnings } = setup({ logWith: [Slow, Rejects, Hangs], callTimeoutMs: 100 });
    await hub.initTrackers('p');
    // Not awaited, as a training loop might do; order must still hold.
    void hub.log({ x: 1 }, 1);
    void hub.log({ x: 2 }, 2);
    void hub.log({ x: 3 }, 3);
    await hub.flush();
    expect(calls.filter((c) => c[0] === 'slow.log').map((c) => c[2])).toEqual([1, 2, 3]);
    expect(calls.filter((c) => c[0].startsWith('rejects.'))).toEqual([['rejects.start']]);
    expect(calls.filter((c) => c[0] === 'hangs.log')).toHaveLength(1);
    expect(warnings).toEqual([
      expect.stringMatching(/^Tracker "rejects" failed in start: 401 Unauthorized\. .*No JSONL event stream is written/),
      expect.stringMatching(/^Tracker "hangs" failed in log \(step 1\): log \(step 1\) did not finish within 100 ms/),
    ]);
    expect(hub.trackers.map((t) => t.name)).toEqual(['slow']);
  });

  it('a tracker whose constructor throws is reported and skipped', async () => {
    class Boom {
      static readonly trackerName = 'boom';
      static readonly requiresLoggingDirectory = false;
      constructor() {
        throw new Error('MLFLOW_TRACKING_URI is not set');
      }
      log() {}
      storeInitConfiguration() {}
      finish() {}
    }
    const { hub, warnings } = setup({ logWith: [Boom as unknown as TrackerClass] });
    await hub.initTrackers('p');
    expect(hub.trackers).toEqual([]);
    expect(warnings[0]).toMatch(/Tracker "boom" failed in its constructor: MLFLOW_TRACKING_URI is not set/);
  });

  it('warns (does not throw) when a requested built-in cannot be loaded', async () => {
    const warnings: string[] = [];
    const hub = new TrackerHub({ logWith: ['mlflow'], warn: (m) => warnings.push(m), registry: new TrackerRegistry(), loadBuiltins: () => Promise.reject(new Error("Cannot find package '@accelerate/trackers'")) });
    await hub.initTrackers('p');
    expect(warnings).toEqual([expect.stringMatching(/tracker "mlflow" comes from @accelerate\/trackers, which could not be loaded \(Cannot find package/)]);
  });

  it('images that cannot be read are skipped with a warning; good ones reach the tracker', async () => {
    const { hub, warnings, events } = setup({ logWith: ['jsonl'], loggingDir: '/l' });
    await hub.initTrackers('p');
    await hub.logImages({ bad: new Uint8Array([1, 2]), good: { data: new Uint8Array(4), width: 2, height: 2 } }, 5);
    expect(warnings).toEqual([expect.stringMatching(/image "bad" is a Uint8Array without the PNG signature.*It is skipped/)]);
    const img = events.find((e) => e.type === 'images');
    expect(img).toMatchObject({ type: 'images', step: 5, images: { good: { format: 'raw', width: 2, height: 2, channels: 1 } } });
    expect(Object.keys((img as { images: object }).images)).toEqual(['good']);
  });

  it('initTrackers twice is an error that says to call endTraining first', async () => {
    const { hub } = setup({ logWith: [makeClass('a')] });
    await hub.initTrackers('p');
    await expect(hub.initTrackers('p')).rejects.toThrow(/already called for this run; call endTraining\(\) first/);
    await hub.endTraining();
    await hub.endTraining();
    await hub.initTrackers('p2');
  });
});

describe('dispatchEvent', () => {
  it('sends text to log() when a tracker has no logText, and skips lifecycle events', () => {
    const got: unknown[] = [];
    const t: Tracker = { name: 't', requiresLoggingDirectory: false, mainProcessOnly: true, storeInitConfiguration: () => {}, log: (v, s) => void got.push([v, s]), finish: () => void got.push('finish') };
    dispatchEvent(t, { type: 'text', values: { a: 'b' }, step: 2, time: 0, rank: 0 });
    dispatchEvent(t, { type: 'finish', status: 'finished', time: 0, rank: 0 });
    dispatchEvent(t, { type: 'metrics', values: { x: NaN }, time: 0, rank: 0 });
    expect(got).toEqual([[{ a: 'b' }, 2]]);
  });
});
