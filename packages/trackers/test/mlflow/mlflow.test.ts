import { describe, it, expect, afterEach } from 'vitest';
import { readEventLog } from '@accelerate/core';
import { TrackerHub, TrackerRegistry } from '@accelerate/core/internal';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { builtinTrackers } from '../../src/index.js';
import { MlflowTracker, mlflowProxiedArtifactRoot } from '../../src/mlflow.js';
import { encodePng, pngInfo } from '../../src/tensorboard/png.js';
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

describe('MLflow images and artifacts through the proxied artifact store', () => {
  const pixels = Uint8Array.from([0, 64, 128, 255]); // a 2x2 grey image

  it('uploads images as PNG under images/ and files and folders under their names, with PUT and their content type', async () => {
    server = await startMockMlflow();
    const dir = tempDir('mlflow-art');
    const warnings: string[] = [];
    const file = join(dir, 'predictions.csv');
    writeFileSync(file, 'id,label\n0,7\n');
    const folder = join(dir, 'ckpt');
    mkdirSync(join(folder, 'sub'), { recursive: true });
    writeFileSync(join(folder, 'model.safetensors'), Buffer.from([1, 2, 3, 4]));
    writeFileSync(join(folder, 'sub', 'config.json'), '{"a":1}');
    const png = encodePng(Uint8Array.from([255, 0, 0]), 1, 1, 3);

    const hub = hubFor(server.url, {}, dir, warnings);
    await hub.initTrackers('art', { lr: 0.1 }, { mlflow: { trackingUri: server.url, flushIntervalMs: 60_000 } });
    await hub.log({ loss: 1 }, 0);
    await hub.logImages({ 'samples/digit': { data: pixels, width: 2, height: 2, channels: 1 }, red: png }, 3);
    await hub.logArtifact(file);
    await hub.logArtifact(folder, { name: 'checkpoint' });
    await hub.endTraining();

    expect(warnings).toEqual([]);
    const [run] = [...server.runs.values()];
    const root = `${run.info.experiment_id}/${run.info.run_id}/artifacts`;
    expect([...server.artifacts.keys()].sort()).toEqual(
      [`${root}/checkpoint/model.safetensors`, `${root}/checkpoint/sub/config.json`, `${root}/images/red_step3.png`, `${root}/images/samples/digit_step3.png`, `${root}/predictions.csv`].sort(),
    );
    expect(new Uint8Array(server.artifacts.get(`${root}/images/samples/digit_step3.png`)!)).toEqual(encodePng(pixels, 2, 2, 1));
    expect(pngInfo(new Uint8Array(server.artifacts.get(`${root}/images/samples/digit_step3.png`)!))).toEqual({ width: 2, height: 2, channels: 1 });
    expect(new Uint8Array(server.artifacts.get(`${root}/images/red_step3.png`)!)).toEqual(png);
    expect(server.artifacts.get(`${root}/predictions.csv`)!.toString()).toBe('id,label\n0,7\n');
    expect([...server.artifacts.get(`${root}/checkpoint/model.safetensors`)!]).toEqual([1, 2, 3, 4]);
    const puts = server.requests.filter((r) => r.method === 'PUT');
    // Images first, then the artifacts in the order they were logged (a folder's files in the order readdir gives).
    const sent = puts.map((r) => [r.path.slice(`mlflow-artifacts/${root}/`.length), r.contentType]);
    expect(sent.slice(0, 3)).toEqual([
      ['images/samples/digit_step3.png', 'image/png'],
      ['images/red_step3.png', 'image/png'],
      ['predictions.csv', 'text/csv'],
    ]);
    expect(sent.slice(3).sort()).toEqual([
      ['checkpoint/model.safetensors', 'application/octet-stream'],
      ['checkpoint/sub/config.json', 'application/json'],
    ]);
    expect(run.info.status).toBe('FINISHED');
    expect(run.metrics.map((m) => m.key)).toEqual(['loss']);
  });

  it('retries an upload answered 503 and then stores it once', async () => {
    server = await startMockMlflow();
    const t = new MlflowTracker(init(undefined, 'retry', { trackingUri: server.url, retries: 3 }));
    await t.start();
    server.failNext(503, 2);
    await t.logImages({ x: { format: 'raw', width: 2, height: 2, channels: 1, data: pixels } }, 0);
    expect(server.requests.filter((r) => r.method === 'PUT')).toHaveLength(3);
    expect(t.uploaded).toEqual(['images/x_step0.png']);
    expect(server.artifacts.size).toBe(1);
    await t.finish();
  });

  it('a server without --serve-artifacts: one warning with its reason, a count at the end, metrics and the run unaffected, events kept in the JSONL stream', async () => {
    server = await startMockMlflow({ serveArtifacts: false });
    const dir = tempDir('mlflow-noart');
    const warnings: string[] = [];
    const hub = hubFor(server.url, {}, dir, warnings);
    await hub.initTrackers('noart', {}, { mlflow: { trackingUri: server.url, retries: 0, flushIntervalMs: 60_000 } });
    for (let step = 0; step < 3; step++) {
      await hub.log({ loss: 3 - step }, step);
      await hub.logImages({ digit: { data: pixels, width: 2, height: 2, channels: 1 } }, step);
    }
    await hub.endTraining();
    const [run] = [...server.runs.values()];
    expect(warnings).toEqual([
      `mlflow: could not upload image "digit" (step 0): PUT ${server.url}/api/2.0/mlflow-artifacts/artifacts/${run.info.experiment_id}/${run.info.run_id}/artifacts/images/digit_step0.png failed: HTTP 503 ` +
        'Endpoint: /api/2.0/mlflow-artifacts/artifacts/<path:artifact_path> disabled due to the mlflow server running with `--no-serve-artifacts`. To enable artifacts server functionality, run `mlflow server` with `--serve-artifacts`. ' +
        'It stays in the JSONL stream (accelerate replay <events.jsonl> --to mlflow uploads it later).',
      'mlflow: 3 image/artifact uploads failed in this run (the first one\'s reason was shown); they stay in the JSONL stream.',
    ]);
    expect(run.metrics.map((m) => m.value)).toEqual([3, 2, 1]);
    expect(run.info.status).toBe('FINISHED');
    expect(readEventLog(join(dir, 'noart', 'events.jsonl')).events.filter((e) => e.type === 'images')).toHaveLength(3);
  });

  it('a run whose artifact store is not proxied (s3://): no upload is attempted, the warning says how to start the server', async () => {
    server = await startMockMlflow({ artifactUri: (e, r) => `s3://bucket/${e}/${r}/artifacts` });
    const warnings: string[] = [];
    const t = new MlflowTracker({ ...init(undefined, 'store', { trackingUri: server.url }), warn: (m) => warnings.push(m) });
    await t.start();
    await t.logArtifact(import.meta.filename);
    await t.finish();
    expect(server.requests.filter((r) => r.method === 'PUT')).toEqual([]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^mlflow: could not upload artifact "mlflow\.test\.ts" \(.*\): the run's artifact store is "s3:\/\/bucket\/\d+\/\w+\/artifacts", which only MLflow's Python client can write; start the server with proxied artifacts/);
  });

  it('maps the run artifact URI to the proxied upload path', () => {
    expect(mlflowProxiedArtifactRoot('mlflow-artifacts:/3/abc/artifacts')).toBe('3/abc/artifacts');
    expect(mlflowProxiedArtifactRoot('mlflow-artifacts://mlflow.local:5000/3/abc/artifacts/')).toBe('3/abc/artifacts');
    expect(mlflowProxiedArtifactRoot('file:///mlruns/3/abc/artifacts')).toBeUndefined();
    expect(mlflowProxiedArtifactRoot(undefined)).toBeUndefined();
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

  it.skipIf(!uri)('uploads an image and a file that the server lists (artifacts/list) and serves back byte for byte', async () => {
    const warnings: string[] = [];
    const t = new MlflowTracker({ ...init(undefined, `accelerate-ts-test-${Date.now()}`, { runName: 'opt-in-artifacts' }), warn: (m) => warnings.push(m) });
    await t.start();
    const pixels = Uint8Array.from([0, 64, 128, 255]);
    await t.logImages({ digit: { format: 'raw', width: 2, height: 2, channels: 1, data: pixels } }, 1);
    const file = join(tempDir('mlflow-real'), 'notes.txt');
    writeFileSync(file, 'hello mlflow\n');
    await t.logArtifact(file);
    await t.finish();
    expect(warnings).toEqual([]);
    const listed = (await t.call('artifacts/list', undefined, { run_id: t.runId!, path: 'images' })) as { files?: Array<{ path: string }> };
    expect(listed.files?.map((f) => f.path)).toEqual(['images/digit_step1.png']);
    const root = mlflowProxiedArtifactRoot(t.artifactUri)!;
    const get = async (p: string) => new Uint8Array(await (await fetch(`${t.trackingUri}/api/2.0/mlflow-artifacts/artifacts/${root}/${p}`)).arrayBuffer());
    expect(await get('images/digit_step1.png')).toEqual(encodePng(pixels, 2, 2, 1));
    expect(Buffer.from(await get('notes.txt')).toString()).toBe('hello mlflow\n');
  });
});
