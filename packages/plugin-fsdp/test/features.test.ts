// FSDP's options at work, each against the DDP run of the same seed (real processes, gloo).
import { describe, it, expect } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runRanks, runRanksOk } from './fixtures/spawn-ranks.js';
import { maxDiff } from './fixtures/compare.js';

const worker = fileURLToPath(new URL('./fixtures/train-worker.ts', import.meta.url));
const TRANSFORMER = { MODEL: 'transformer', STEPS: '10' };
const LAYERS = { autoWrapPolicy: { transformerLayerClasses: ['TransformerEncoderLayer'] } };

const cache = new Map<string, Promise<Array<Record<string, any>>>>();
const train = (world: number, env: Record<string, string>) => {
  const key = `${world}:${JSON.stringify(env)}`;
  if (!cache.has(key)) cache.set(key, runRanksOk(worker, world, env, 180_000));
  return cache.get(key)!;
};
const ddp = () => train(2, { ...TRANSFORMER, STRATEGY: 'DDP' });
const fsdpWith = (options: object, extra: Record<string, string> = {}) =>
  train(2, { ...TRANSFORMER, ...extra, STRATEGY: 'FULL_SHARD', FSDP_OPTIONS: JSON.stringify({ ...LAYERS, ...options }) });


describe('FSDP options (2 processes, transformer, TransformerEncoderLayer units)', () => {
  it('activationCheckpointing: layers recompute their activations in backward; same numbers as DDP (1e-5)', async () => {
    const d = maxDiff(await ddp(), await fsdpWith({ activationCheckpointing: true }));
    expect(d.loss).toBeLessThanOrEqual(1e-5);
    expect(d.param).toBeLessThanOrEqual(1e-5);
  });

  it('cpuOffload: shards and optimizer state kept on the cpu device; same numbers as DDP (1e-5)', async () => {
    const d = maxDiff(await ddp(), await fsdpWith({ cpuOffload: true }));
    expect(d.loss).toBeLessThanOrEqual(1e-5);
    expect(d.param).toBeLessThanOrEqual(1e-5);
  });

  it('mixedPrecisionPolicy bf16: computes and reduces in bfloat16 over float32 master weights; close to DDP', async () => {
    const [run, reference] = [await fsdpWith({ mixedPrecisionPolicy: 'bf16' }), await ddp()];
    const d = maxDiff(reference, run);
    expect(d.loss).toBeGreaterThan(0); // bf16 arithmetic really ran
    expect(d.loss).toBeLessThan(0.05);
    expect(d.param).toBeLessThan(0.01); // float32 master weights: AdamW steps of lr 1e-3 stay close
  });

  it('syncModuleStates: a rank that built other weights gets rank 0\'s; without it the ranks train different models', async () => {
    const perturbed = { PERTURB_RANK: '1' };
    const synced = maxDiff(await ddp(), await fsdpWith({ syncModuleStates: true }, perturbed));
    expect(synced.param).toBeLessThanOrEqual(1e-5);
    const unsynced = maxDiff(await ddp(), await fsdpWith({ syncModuleStates: false, cpuRamEfficientLoading: false }, perturbed));
    expect(unsynced.param).toBeGreaterThan(1e-3);
  });

  it('cpuRamEfficientLoading: a rank that built the model on the meta device (no memory) receives rank 0\'s weights', async () => {
    const d = maxDiff(await ddp(), await fsdpWith({ syncModuleStates: true, cpuRamEfficientLoading: true }, { META_RANKS: '1' }));
    expect(d.loss).toBeLessThanOrEqual(1e-5);
    expect(d.param).toBeLessThanOrEqual(1e-5);
  });

  it('SHARD_GRAD_OP and BACKWARD_POST prefetch: same numbers as DDP (1e-5)', async () => {
    const run = await train(2, { ...TRANSFORMER, STRATEGY: 'SHARD_GRAD_OP', FSDP_OPTIONS: JSON.stringify({ ...LAYERS, backwardPrefetch: 'BACKWARD_POST' }) });
    const d = maxDiff(await ddp(), run);
    expect(d.loss).toBeLessThanOrEqual(1e-5);
    expect(d.param).toBeLessThanOrEqual(1e-5);
  });

  it('a rank that dies during training: the other fails within seconds naming the collective it waited in, no hang', async () => {
    const t0 = Date.now();
    const ranks = await runRanks(worker, 2, { ...TRANSFORMER, STRATEGY: 'FULL_SHARD', FSDP_OPTIONS: JSON.stringify(LAYERS), DIE_AT_STEP: '3', DIE_RANK: '1' }, 120_000);
    expect(ranks[1].code).toBe(3);
    expect(ranks[0].code).not.toBe(0);
    expect(ranks[0].code).not.toBeNull(); // exited by itself, not killed by the test's timer
    expect(ranks[0].stderr).toMatch(/(allGatherInto|reduceScatterInto|allGather|allReduce)[^\n]*#\d+/);
    expect(Date.now() - t0).toBeLessThan(60_000);
  });
});
