import { describe, it, expect, afterEach } from 'vitest';
import { TrackerHub, TrackerRegistry, readEventLog } from '@accelerate/core';
import { join } from 'node:path';
import { builtinTrackers } from '../../src/index.js';
import { MlflowTracker } from '../../src/mlflow.js';
import { replay } from '../../src/replay.js';
import { freePort, init, tempDir } from '../helpers.js';
import { startMockMlflow, type MockMlflow } from './mock-server.js';

let server: MockMlflow | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function hubFor(uri: string, extra: Record<string, unknown> = {}, loggingDir?: string, warnings: string[] = []) {
  return new TrackerHub({
    logWith: ['mlflow'],
    loggingDir,
    registry: new TrackerRegistry(),
    loadBuiltins: async () => builtinTrackers,
    warn: (m) => warnings.push(m),
    ...extra,
  });
}

describe('MlflowTracker against a server enforcing the REST API', () => {
  it('creates the experiment and run, batches params (100) and metrics (1000), closes the run FINISHED', async () => {
    server = await startMockMlflow();
    const warnings: string[] = [];
    const hub = hubFor(server.url, {}, undefined, warnings);
    const config = Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`p${i}`, i % 2 ? i : `v${i}`]));
    await hub.initTrackers('my-exp', { ...config, nested: { lr: 0.5 } }, { mlflow: { trackingUri: server.url, runName: 'r1', tags: { team: 'ts' }, flushIntervalMs: 60_000 } });
    for (let step = 0; step < 1250; step++) await hub.log({ loss: 1 / (step + 1), acc: { train: step / 1250 }, note: 'x' }, step);
    await hub.endTraining();

    expect(server.experiments.get('my-exp')).toBeDefined();
    const [run] = [...server.runs.values()];
    expect(run.info.experiment_id).toBe(server.experiments.get('my-exp'));
    expect(run.info.status).toBe('FINISHED');
    expect(run.info.end_time).toBeGreaterThan(run.info.start_time - 1);
    expect(run.tags).toEqual({ 'mlflow.runName': 'r1', team: 'ts' });
    expect(Object.keys(run.params)).toHaveLength(151);
    expect(run.params.p3).toBe('3');
    expect(run.params.p4).toBe('v4');
    expect(run.params['nested.lr']).toBe('0.5');
    const batches = server.requests.filter((r) => r.path === 'runs/log-batch');
    const paramSizes = batches.map((b) => ((b.body as { params?: unknown[] }).params ?? []).length).filter((n) => n > 0);
    expect(paramSizes).toEqual([100, 51]);
    const metricSizes = batches.map((b) => ((b.body as { metrics?: unknown[] }).metrics ?? []).length).filter((n) => n > 0);
    expect(metricSizes).toEqual([1000, 1000, 500]);
    expect(run.metrics).toHaveLength(2500);
    const loss = run.metrics.filter((m) => m.key === 'loss');
    expect(loss.map((m) => m.step)).toEqual(Array.from({ length: 1250 }, (_, i) => i));
    expect(loss.map((m) => m.value)).toEqual(Array.from({ length: 1250 }, (_, i) => 1 / (i + 1)));
    expect(run.metrics.find((m) => m.key === 'acc/train' && m.step === 625)?.value).toBe(0.5);
    expect(warnings).toEqual(['mlflow: "note" is text; MLflow metrics are numbers, so it is skipped (it stays in the JSONL stream).']);
    const order = server.requests.map((r) => r.path).filter((p, i, a) => a.indexOf(p) === i);
    expect(order).toEqual(['experiments/get-by-name', 'experiments/create', 'runs/create', 'runs/log-batch', 'runs/update']);
  });

  it('reuses an existing experiment, retries 503s, and uses log-parameter and set-tag', async () => {
    server = await startMockMlflow();
    server.experiments.set('exists', '42');
    const t = new MlflowTracker(init(undefined, 'exists', { trackingUri: server.url, retries: 3 }));
    await t.start();
    expect(t.experimentId).toBe('42');
    server.failNext(503, 2);
    await t.logParameter('seed', 7);
    await t.setTag('stage', 'test');
    const run = server.runs.get(t.runId!)!;
    expect(run.params).toEqual({ seed: '7' });
    expect(run.tags.stage).toBe('test');
    expect(server.requests.filter((r) => r.path === 'runs/log-parameter')).toHaveLength(3);
    // The server's error shape reaches the user: changing a param is refused.
    await expect(t.logParameter('seed', 8)).rejects.toThrow(/HTTP 400 INVALID_PARAMETER_VALUE: Changing param values is not allowed/);
    await t.finish();
    expect(run.info.status).toBe('FINISHED');
  });

  it('without a tracking URI the error says what to set', () => {
    const saved = process.env.MLFLOW_TRACKING_URI;
    delete process.env.MLFLOW_TRACKING_URI;
    try {
      expect(() => new MlflowTracker(init(undefined))).toThrow(/set MLFLOW_TRACKING_URI \(or initKwargs\.mlflow\.trackingUri\)/);
      expect(() => new MlflowTracker(init(undefined, 'p', { trackingUri: 'file:///tmp/mlruns' }))).toThrow(/"file:\/\/\/tmp\/mlruns" is not one/);
    } finally {
      if (saved !== undefined) process.env.MLFLOW_TRACKING_URI = saved;
    }
  });

  it('server down: training goes on, the tracker is disabled with a replay hint, and replay later delivers every event', async () => {
    const dir = tempDir('mlflow-down');
    const warnings: string[] = [];
    const down = `http://127.0.0.1:${await freePort()}`; // nothing listens there
    const hub = hubFor(down, {}, dir, warnings);
    await hub.initTrackers('proj', { lr: 0.1 }, { mlflow: { trackingUri: down, retries: 0, timeoutMs: 2000 } });
    for (let step = 0; step < 5; step++) await hub.log({ loss: 10 - step }, step);
    await hub.endTraining();
    const path = join(dir, 'proj', 'events.jsonl');
    expect(warnings).toEqual([expect.stringMatching(new RegExp(`^Tracker "mlflow" failed in start: .*ECONNREFUSED.*accelerate replay ${path.replace(/[/.]/g, '\\$&')} --to mlflow`))]);
    expect(readEventLog(path).events.filter((e) => e.type === 'metrics')).toHaveLength(5);

    server = await startMockMlflow();
    const result = await replay(path, { to: 'mlflow', initKwargs: { mlflow: { trackingUri: server.url } } });
    expect(result.trackers).toEqual({ mlflow: { delivered: 8 } });
    const [run] = [...server.runs.values()];
    expect(run.params).toEqual({ lr: '0.1' });
    expect(run.metrics.map((m) => [m.step, m.value])).toEqual([0, 1, 2, 3, 4].map((s) => [s, 10 - s]));
    // Original timestamps are kept.
    const logged = readEventLog(path).events.filter((e) => e.type === 'metrics').map((e) => Math.round(e.time * 1000));
    expect(run.metrics.map((m) => m.timestamp)).toEqual(logged);
    expect(run.info.status).toBe('FINISHED');
  });
});

describe('MLflow: a real server (opt-in)', () => {
  const uri = process.env.MLFLOW_TRACKING_URI;
  if (!uri) console.log('[skip] real MLflow suite: set MLFLOW_TRACKING_URI to an MLflow server (e.g. `mlflow server --port 5000`) to run it');
  it.skipIf(!uri)('logs params and metrics that the server returns through runs/get and metrics/get-history', async () => {
    const t = new MlflowTracker(init(undefined, `accelerate-ts-test-${Date.now()}`, { runName: 'opt-in' }));
    await t.start();
    await t.storeInitConfiguration({ lr: 0.25 });
    for (let s = 0; s < 3; s++) await t.log({ loss: 1 / (s + 1) }, s);
    await t.finish();
    const run = (await t.call('runs/get', undefined, { run_id: t.runId! })) as { run: { info: { status: string }; data: { params: Array<{ key: string; value: string }> } } };
    expect(run.run.info.status).toBe('FINISHED');
    expect(run.run.data.params).toContainEqual({ key: 'lr', value: '0.25' });
    const hist = (await t.call('metrics/get-history', undefined, { run_id: t.runId!, metric_key: 'loss' })) as { metrics: Array<{ step: number; value: number }> };
    expect(hist.metrics.map((m) => [Number(m.step), m.value])).toEqual([[0, 1], [1, 0.5], [2, 1 / 3]]);
  });
});
