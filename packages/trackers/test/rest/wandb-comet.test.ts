import { describe, it, expect, afterEach } from 'vitest';
import { createServer, type Server } from 'node:http';
import { TrackerHub, TrackerRegistry } from '@accelerate/core/internal';
import { builtinTrackers } from '../../src/index.js';
import { WandbTracker } from '../../src/wandb.js';
import { CometTracker } from '../../src/comet.js';
import { init } from '../helpers.js';

interface Req {
  method: string;
  path: string;
  auth?: string;
  body: Record<string, unknown>;
}

/** A server that records requests and answers with `reply(req)`. */
async function recorder(reply: (r: Req) => unknown): Promise<{ url: string; reqs: Req[]; close: () => Promise<void> }> {
  const reqs: Req[] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const r: Req = { method: req.method!, path: req.url!, auth: req.headers.authorization, body: text ? JSON.parse(text) : {} };
    reqs.push(r);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(reply(r)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, reqs, close: () => new Promise((r) => server.close(() => r())) };
}

let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

describe('WandbTracker (HTTP API)', () => {
  it('finds the entity, upserts the run with its config, streams history rows with offsets, and completes', async () => {
    const srv = await recorder((r) =>
      r.path === '/graphql'
        ? String(r.body.query).includes('viewer')
          ? { data: { viewer: { entity: 'me' } } }
          : { data: { upsertBucket: { bucket: { name: 'abc', project: { name: 'proj', entity: { name: 'me' } } }, inserted: true } } }
        : {},
    );
    close = srv.close;
    const hub = new TrackerHub({ logWith: ['wandb'], registry: new TrackerRegistry(), loadBuiltins: async () => builtinTrackers, warn: () => {} });
    await hub.initTrackers('proj', { lr: 0.1 }, { wandb: { apiKey: 'k123', baseUrl: srv.url, runId: 'run00001', flushIntervalMs: 60_000 } });
    await hub.log({ loss: 1, acc: { val: 0.5 } }, 0);
    await hub.log({ loss: 0.5 }, 1);
    await (hub.getTracker('wandb') as WandbTracker).flush();
    await hub.log({ loss: 0.25 }, 2);
    await hub.endTraining();
    expect(srv.reqs.every((r) => r.auth === `Basic ${Buffer.from('api:k123').toString('base64')}`)).toBe(true);
    const gql = srv.reqs.filter((r) => r.path === '/graphql');
    expect(gql).toHaveLength(3);
    expect((gql[2].body.variables as Record<string, unknown>).config).toBe(JSON.stringify({ lr: { value: 0.1, desc: null } }));
    expect(gql[1].body.variables).toMatchObject({ name: 'run00001', project: 'proj', entity: 'me' });
    const fs = srv.reqs.filter((r) => r.path === '/files/me/proj/run00001/file_stream');
    const history = fs.filter((r) => r.body.files).map((r) => (r.body.files as Record<string, { offset: number; content: string[] }>)['wandb-history.jsonl']);
    expect(history.map((h) => h.offset)).toEqual([0, 2]);
    const rows = history.flatMap((h) => h.content.map((l) => JSON.parse(l)));
    expect(rows.map((r) => [r._step, r.loss, r['acc/val']])).toEqual([[0, 1, 0.5], [1, 0.5, undefined], [2, 0.25, undefined]]);
    expect(fs.at(-1)!.body).toEqual({ complete: true, exitcode: 0 });
  });

  it('needs an API key and says how to work offline', () => {
    const saved = process.env.WANDB_API_KEY;
    delete process.env.WANDB_API_KEY;
    try {
      expect(() => new WandbTracker(init(undefined))).toThrow(/set WANDB_API_KEY.*accelerate replay <events\.jsonl> --to wandb/);
    } finally {
      if (saved !== undefined) process.env.WANDB_API_KEY = saved;
    }
  });

  const key = process.env.WANDB_API_KEY;
  if (!key) console.log('[skip] real W&B suite: set WANDB_API_KEY (and network access to api.wandb.ai) to run it');
  it.skipIf(!key)('logs a run to the real W&B service (opt-in)', async () => {
    const t = new WandbTracker(init(undefined, 'accelerate-ts-test'));
    await t.start();
    await t.storeInitConfiguration({ lr: 0.1 });
    await t.log({ loss: 1 }, 0);
    await t.finish();
    expect(t.entity).toBeTruthy();
  });
});

describe('CometTracker (REST API v2)', () => {
  it('creates the experiment and writes parameters and metrics with the API key header', async () => {
    const srv = await recorder((r) => (r.path.endsWith('/experiment/create') ? { experimentKey: 'EXP1', link: 'https://comet/x' } : { msg: 'ok' }));
    close = srv.close;
    const warnings: string[] = [];
    const hub = new TrackerHub({ logWith: ['comet_ml'], registry: new TrackerRegistry(), loadBuiltins: async () => builtinTrackers, warn: (m) => warnings.push(m) });
    await hub.initTrackers('proj', { lr: 0.1, opt: { name: 'adam' } }, { comet_ml: { apiKey: 'ck', workspace: 'ws', baseUrl: srv.url } });
    await hub.log({ loss: 0.5, note: 'hi' }, 3);
    await hub.endTraining();
    expect(srv.reqs.every((r) => r.auth === 'ck' && r.method === 'POST')).toBe(true);
    expect(srv.reqs.map((r) => [r.path, r.body])).toEqual([
      ['/write/experiment/create', { workspaceName: 'ws', projectName: 'proj' }],
      ['/write/experiment/parameter', { experimentKey: 'EXP1', parameterName: 'lr', parameterValue: '0.1' }],
      ['/write/experiment/parameter', { experimentKey: 'EXP1', parameterName: 'opt.name', parameterValue: 'adam' }],
      ['/write/experiment/metric', { experimentKey: 'EXP1', metricName: 'loss', metricValue: '0.5', step: 3, timestamp: expect.any(Number) }],
    ]);
    expect(warnings).toEqual(['comet_ml: "note" is text; Comet metrics are numbers, so it is skipped (it stays in the JSONL stream).']);
    expect((hub as unknown as { disabledTrackers: unknown[] }).disabledTrackers).toEqual([]);
  });

  const key = process.env.COMET_API_KEY;
  const ws = process.env.COMET_WORKSPACE;
  if (!key || !ws) console.log('[skip] real Comet suite: set COMET_API_KEY and COMET_WORKSPACE (and network access to comet.com) to run it');
  it.skipIf(!key || !ws)('logs an experiment to the real Comet service (opt-in)', async () => {
    const t = new CometTracker(init(undefined, 'accelerate-ts-test'));
    await t.start();
    await t.log({ loss: 1 }, 0);
    expect(t.experimentKey).toBeTruthy();
  });
});
