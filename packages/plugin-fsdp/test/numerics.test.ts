// FSDP against DDP, real processes over gloo: same model, seed and data, 20 AdamW
// steps. Every sharding strategy must give DDP's losses and final parameters within
// 1e-5 ([B64]); the sharded runs must hold a fraction of DDP's parameter memory.
import { describe, it, expect } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runRanksOk } from './fixtures/spawn-ranks.js';
import { maxDiff } from './fixtures/compare.js';

const worker = fileURLToPath(new URL('./fixtures/train-worker.ts', import.meta.url));

type Run = Array<Record<string, any>>;
const cache = new Map<string, Promise<Run>>();
function train(world: number, env: Record<string, string>): Promise<Run> {
  const key = `${world}:${JSON.stringify(env)}`;
  if (!cache.has(key)) cache.set(key, runRanksOk(worker, world, env, 120_000));
  return cache.get(key)!;
}


const MLP_WRAP = JSON.stringify({ autoWrapPolicy: { minNumParams: 1000 } });
const TRANSFORMER_WRAP = JSON.stringify({ autoWrapPolicy: { transformerLayerClasses: ['TransformerEncoderLayer'] } });

describe('FSDP equals DDP (2 processes, gloo)', () => {
  for (const strategy of ['FULL_SHARD', 'SHARD_GRAD_OP', 'NO_SHARD'] as const) {
    it(`[B64] ${strategy}: MLP losses and parameters after 20 AdamW steps equal DDP's within 1e-5`, async () => {
      const [ddp, fsdp] = await Promise.all([train(2, { STRATEGY: 'DDP' }), train(2, { STRATEGY: strategy, FSDP_OPTIONS: MLP_WRAP })]);
      expect(fsdp[0].strategy).toBe('FSDP');
      expect(fsdp[0].distributedType).toBe('FSDP');
      expect(fsdp[0].losses).toHaveLength(20);
      const d = maxDiff(ddp, fsdp);
      expect(d.loss).toBeLessThanOrEqual(1e-5);
      expect(d.param).toBeLessThanOrEqual(1e-5);
    });
  }

  it('[B64] FULL_SHARD, transformer with TransformerEncoderLayer units: equal to DDP within 1e-5', async () => {
    const env = { MODEL: 'transformer' };
    const [ddp, fsdp] = await Promise.all([train(2, { ...env, STRATEGY: 'DDP' }), train(2, { ...env, STRATEGY: 'FULL_SHARD', FSDP_OPTIONS: TRANSFORMER_WRAP })]);
    const d = maxDiff(ddp, fsdp);
    expect(d.loss).toBeLessThanOrEqual(1e-5);
    expect(d.param).toBeLessThanOrEqual(1e-5);
  });

  it('FULL_SHARD with gradient accumulation (2 micro-steps without sync) and clipGradNorm(0.5): equal to DDP within 1e-5', async () => {
    const env = { GA: '2', CLIP: '0.5' };
    const [ddp, fsdp] = await Promise.all([train(2, { ...env, STRATEGY: 'DDP' }), train(2, { ...env, STRATEGY: 'FULL_SHARD', FSDP_OPTIONS: MLP_WRAP })]);
    const d = maxDiff(ddp, fsdp);
    expect(d.loss).toBeLessThanOrEqual(1e-5);
    expect(d.param).toBeLessThanOrEqual(1e-5);
  });
});

describe('FSDP on 4 processes', () => {
  it('[B64] FULL_SHARD and HYBRID_SHARD (2 shard groups × 2 replicas): equal to DDP within 1e-5', async () => {
    const ddp = await train(4, { STRATEGY: 'DDP' });
    for (const strategy of ['FULL_SHARD', 'HYBRID_SHARD', 'HYBRID_SHARD_ZERO2']) {
      const fsdp = await train(4, { STRATEGY: strategy, FSDP_OPTIONS: MLP_WRAP, LOCAL_WORLD_SIZE: '2' });
      const d = maxDiff(ddp, fsdp);
      console.log(`4 processes, ${strategy} vs DDP: max |loss diff| ${d.loss.toExponential(2)}, max |param diff| ${d.param.toExponential(2)}`);
      expect(d.loss, strategy).toBeLessThanOrEqual(1e-5);
      expect(d.param, strategy).toBeLessThanOrEqual(1e-5);
    }
  }, 240_000);

  it('[B64] FULL_SHARD, transformer with TransformerEncoderLayer units on 4 processes: equal to DDP within 1e-5', async () => {
    const env = { MODEL: 'transformer' };
    const ddp = await train(4, { ...env, STRATEGY: 'DDP' });
    const fsdp = await train(4, { ...env, STRATEGY: 'FULL_SHARD', FSDP_OPTIONS: TRANSFORMER_WRAP });
    const d = maxDiff(ddp, fsdp);
    console.log(`4 processes, transformer FULL_SHARD vs DDP: loss ${d.loss.toExponential(2)}, parameters ${d.param.toExponential(2)}, attention key bias ${d.keyBias.toExponential(2)}`);
    expect(d.loss).toBeLessThanOrEqual(1e-5);
    expect(d.param).toBeLessThanOrEqual(1e-5);
    expect(d.keyBias).toBeLessThan(1e-3); // trained on rounding noise only (fixtures/compare.ts)
  }, 240_000);
});
