import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { TrackerHub, TrackerRegistry } from '@accelerate/core/internal';
import { builtinTrackers } from '../../src/index.js';
import { freePort, tempDir, tensorboardPython } from '../helpers.js';

async function getJson(url: string, init?: RequestInit): Promise<unknown> {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

describe('a real TensorBoard server lists our run', () => {
  const { python, reason } = tensorboardPython();

  it.skipIf(!python)(`tensorboard --logdir serves our runs, scalars and hparams over its HTTP API${reason ? ` (skipped: ${reason})` : ''}`, async () => {
    const dir = tempDir('tbserve');
    const hub = new TrackerHub({ logWith: ['tensorboard'], loggingDir: dir, registry: new TrackerRegistry(), loadBuiltins: async () => builtinTrackers, warn: () => {} });
    await hub.initTrackers('exp-a', { lr: 0.01, optimizer: 'sgd' });
    const losses = [1, 0.5, 0.25, 0.125];
    for (let s = 0; s < losses.length; s++) await hub.log({ loss: losses[s], lr: 0.01 * (s + 1) }, s * 10);
    await hub.endTraining();

    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const child = spawn(python!, ['-m', 'tensorboard.main', '--logdir', dir, '--host', '127.0.0.1', '--port', String(port), '--reload_interval', '1'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' },
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += String(d)));
    try {
      // Bounded wait: the server must list the run within 45 s.
      const deadline = Date.now() + 45_000;
      let runs: unknown = [];
      while (Date.now() < deadline) {
        runs = await getJson(`${base}/data/runs`).catch(() => []);
        if (Array.isArray(runs) && runs.includes('exp-a')) break;
        if (child.exitCode !== null) throw new Error(`tensorboard exited early (${child.exitCode}): ${stderr}`);
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(runs).toEqual(['exp-a']);
      const tags = (await getJson(`${base}/data/plugin/scalars/tags`)) as Record<string, Record<string, unknown>>;
      expect(Object.keys(tags['exp-a']).sort()).toEqual(['loss', 'lr']);
      const series = (await getJson(`${base}/data/plugin/scalars/scalars?run=exp-a&tag=loss`)) as Array<[number, number, number]>;
      expect(series.map(([, step, value]) => [step, value])).toEqual(losses.map((v, i) => [i * 10, v]));
      const lr = (await getJson(`${base}/data/plugin/scalars/scalars?run=exp-a&tag=lr`)) as Array<[number, number, number]>;
      expect(lr.map(([, step, value]) => [step, value])).toEqual([0, 1, 2, 3].map((i) => [i * 10, Math.fround(0.01 * (i + 1))]));
      const exp = (await getJson(`${base}/data/plugin/hparams/experiment`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-XSRF-Protected': '1' },
        body: JSON.stringify({ experimentName: '' }),
      })) as { hparamInfos: Array<{ name: string; type: string }>; metricInfos: Array<{ name: { tag: string } }> };
      expect(exp.hparamInfos.map((h) => [h.name, h.type])).toEqual([['lr', 'DATA_TYPE_FLOAT64'], ['optimizer', 'DATA_TYPE_STRING']]);
      expect(exp.metricInfos.map((m) => m.name.tag).sort()).toEqual(['loss', 'lr']);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    }
  }, 90_000);
});
