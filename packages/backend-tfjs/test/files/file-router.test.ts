// model.save('file://…') / tf.loadLayersModel('file://…') without tfjs-node,
// through the router this package registers explicitly.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { rmSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { registerFileRouters, selectTfjsBackend, tf } from '../../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'tfjs-files-'));

function model(): tf.Sequential {
  const m = tf.sequential({
    layers: [tf.layers.dense({ units: 4, inputShape: [3], activation: 'tanh', name: 'fc1' }), tf.layers.dense({ units: 2, name: 'fc2' })],
  });
  m.compile({ optimizer: tf.train.adam(0.01), loss: 'meanSquaredError' });
  return m;
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(async () => {
  tf.enableProdMode();
  await selectTfjsBackend({ engine: 'wasm', env: {} });
});

describe('file:// router', () => {
  it('without the router tfjs itself cannot save to file:// (the gap it fills)', async () => {
    await expect(model().save(`file://${join(dir, 'nope')}`)).rejects.toThrow(/Cannot find any save handlers/);
  });

  it('registers explicitly and once', () => {
    expect(registerFileRouters()).toBe(true);
    expect(registerFileRouters()).toBe(true);
    expect(tf.io.getSaveHandlers('file:///x').length).toBe(1);
  });

  it('save then load gives the same predictions, topology and weights; the optimizer travels with includeOptimizer', async () => {
    const m = model();
    const x = tf.tensor2d([[0.1, -0.2, 0.3], [1, 2, -1]]);
    await m.fit(x, tf.tensor2d([[1, 0], [0, 1]]), { epochs: 2, verbose: 0 });
    const target = join(dir, 'mlp');
    const result = await m.save(`file://${target}`, { includeOptimizer: true });
    expect(result.modelArtifactsInfo.weightDataBytes).toBeGreaterThan((3 * 4 + 4 + 4 * 2 + 2) * 4); // model + Adam slots
    expect(readdirSync(target).sort()).toEqual(['model.json', 'weights.bin']);
    const json = JSON.parse(readFileSync(join(target, 'model.json'), 'utf8'));
    expect(json.weightsManifest[0].paths).toEqual(['weights.bin']);
    expect(json.weightsManifest[0].weights.map((w: { name: string }) => w.name).slice(0, 4)).toEqual(['fc1/kernel', 'fc1/bias', 'fc2/kernel', 'fc2/bias']);

    for (const url of [`file://${join(target, 'model.json')}`, pathToFileURL(target).href]) {
      const back = await tf.loadLayersModel(url);
      expect(back.layers.map((l) => l.name)).toEqual(['fc1', 'fc2']);
      expect(Array.from((back.predict(x) as tf.Tensor).dataSync())).toEqual(Array.from((m.predict(x) as tf.Tensor).dataSync()));
      expect(back.optimizer).toBeTruthy();
    }
  });

  it('a missing model.json is reported with the path and the fix', async () => {
    await expect(tf.loadLayersModel(`file://${join(dir, 'missing', 'model.json')}`)).rejects.toThrow(/file:\/\/ load: cannot read .*missing\/model\.json/);
  });
});
