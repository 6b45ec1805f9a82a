/**
 * accelerate-ts FSDP against Python torch's FSDP on 2 processes (gloo, CPU): the same initial
 * weights and data (written by accelerate-ts, bench/fsdp-common.ts), 8 steps, and the per-step
 * global mean loss and the final full parameters must agree within 1e-5.
 *
 *   mlp 512-1024-1024-10, AdamW, FULL_SHARD          vs Python FSDP2 (fully_shard, reshard_after_forward)
 *   transformer (2 encoder layers as units), AdamW    vs Python FSDP1 (FullyShardedDataParallel, auto-wrap)
 *   mlp, SGD momentum 0.9, SHARD_GRAD_OP             vs Python FSDP2 (reshard_after_forward False);
 *     SGD sees the gradients' scale, which AdamW normalises away (a sum in place of a mean passes AdamW)
 *   transformer, SGD momentum 0.9, SHARD_GRAD_OP     vs Python FSDP2 (each layer fully_shard, then the root)
 *   mlp, AdamW, SHARD_GRAD_OP                        vs Python FSDP1 (ShardingStrategy.SHARD_GRAD_OP)
 *
 * >>> SWITCH: the accelerate-ts side runs `--mode fsdp` (new Accelerator({ plugins: [fsdp({...})] }))
 * as soon as `@accelerate/plugin-fsdp` exports `fsdp` (its dist, else packages/plugin-fsdp/src/index.ts:
 * bench/fsdp-common.ts loadFsdpPlugin), and then also asserts the run used the FSDP strategy and equals
 * our own DDP. Until then it runs our DDP (Python FSDP equals Python DDP bitwise, so the pipeline is
 * checked end to end). FSDP_PARITY_TS_MODE=ddp|fsdp forces one.
 *
 * Parameters are compared without the attention key-projection bias (reported apart, bound 1e-4):
 * its gradient is zero in exact arithmetic, so both sides train it on rounding noise (see paramDiffs).
 * Skipped, with the reason printed, when no Python with torch is found ($ACCELERATE_TS_PYTHON or .venv-py).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as torch from '@accelerate/backend-libtorch';
import { findPython, generate, loadFsdpPlugin, maxCurveDiff, paramDiffs, runPython, runTs, type ModelName, type RunOutput, type RunSpec, type Sharding } from '../bench/fsdp-common.js';

const TOL = 1e-5;
const KEY_BIAS_BOUND = 1e-4;
const STEPS = 6;
const WARMUP = 2;
const py = findPython();
const plugin = await loadFsdpPlugin();
const forced = process.env.FSDP_PARITY_TS_MODE as 'ddp' | 'fsdp' | undefined;
// ---- the switch: FSDP once the plugin exports fsdp -------------------------------------
const TS_MODE: 'ddp' | 'fsdp' = forced ?? (plugin.fsdp ? 'fsdp' : 'ddp');

if (!py.python) console.log(`[fsdp python parity] skipped: ${py.reason}`);
else console.log(`[fsdp python parity] accelerate-ts --mode ${TS_MODE} (${plugin.fsdp ? `fsdp from ${plugin.from}` : plugin.reason}) vs ${py.python} (torch ${py.torch})`);

describe.skipIf(!py.python)('FSDP parity with Python torch (2 processes)', () => {
  let dir: string;
  const files: Partial<Record<ModelName, { init: string; data: string }>> = {};
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fsdp-parity-'));
    for (const m of ['mlp', 'transformer'] as const) files[m] = await generate(torch, dir, m, 0, 4);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const cases: Array<{ name: string; model: ModelName; optim: 'adamw' | 'sgd'; lr: number; sharding: Sharding; python: 'fsdp1' | 'fsdp2' }> = [
    { name: 'mlp, AdamW, FULL_SHARD vs FSDP2', model: 'mlp', optim: 'adamw', lr: 1e-4, sharding: 'FULL_SHARD', python: 'fsdp2' },
    { name: 'transformer, AdamW, FULL_SHARD (layers as units) vs FSDP1', model: 'transformer', optim: 'adamw', lr: 1e-4, sharding: 'FULL_SHARD', python: 'fsdp1' },
    { name: 'mlp, SGD momentum, SHARD_GRAD_OP vs FSDP2', model: 'mlp', optim: 'sgd', lr: 0.01, sharding: 'SHARD_GRAD_OP', python: 'fsdp2' },
    { name: 'transformer, SGD momentum, SHARD_GRAD_OP (layers as units) vs FSDP2', model: 'transformer', optim: 'sgd', lr: 0.01, sharding: 'SHARD_GRAD_OP', python: 'fsdp2' },
    { name: 'mlp, AdamW, SHARD_GRAD_OP vs FSDP1', model: 'mlp', optim: 'adamw', lr: 1e-4, sharding: 'SHARD_GRAD_OP', python: 'fsdp1' },
  ];
  for (const c of cases) {
    it(`${c.name} (ours: ${TS_MODE})`, { timeout: 300_000 }, async () => {
      const spec = (tag: string): RunSpec => ({ model: c.model, ...files[c.model]!, steps: STEPS, warmup: WARMUP, lr: c.lr, world: 2, optim: c.optim, out: join(dir, `${c.model}-${c.optim}-${c.sharding}-${tag}.json`) });
      const [ours, theirs] = await Promise.all([runTs(TS_MODE, c.sharding, spec(`ts-${TS_MODE}`)), runPython(py.python!, c.python, c.sharding, spec(`py-${c.python}`))]);
      expect(ours.skipped, 'the accelerate-ts run was skipped').toBeUndefined();
      if (TS_MODE === 'fsdp') expect(ours.strategy).toBe('FSDP');
      const compare = async (a: RunOutput, b: RunOutput, what: string) => {
        const loss = maxCurveDiff(a.losses, b.losses);
        const p = await paramDiffs(a.params, b.params);
        console.log(`[fsdp python parity] ${c.name}: ${what}: loss curve ${loss.toExponential(2)}, params ${p.excludingKeyBias.toExponential(2)}${c.model === 'transformer' ? `, attention key bias ${p.keyBias.toExponential(2)}` : ''}`);
        expect(a.losses).toHaveLength(STEPS + WARMUP);
        expect(a.losses.every(Number.isFinite)).toBe(true);
        expect(loss, `${what}: max abs diff of the loss curves`).toBeLessThanOrEqual(TOL);
        expect(p.excludingKeyBias, `${what}: max abs diff of the final parameters`).toBeLessThanOrEqual(TOL);
        expect(p.keyBias, `${what}: attention key bias`).toBeLessThanOrEqual(KEY_BIAS_BOUND);
      };
      // Training happened: the loss moved.
      expect(Math.abs(theirs.losses.at(-1)! - theirs.losses[0]!)).toBeGreaterThan(1e-3);
      await compare(ours, theirs, `ts-${TS_MODE} vs py-${c.python}`);
      if (TS_MODE === 'fsdp') await compare(ours, await runTs('ddp', c.sharding, spec('ts-ddp')), 'ts-fsdp vs ts-ddp');
    });
  }
});
