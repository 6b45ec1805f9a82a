// Settings and situations FSDP refuses, each with a message that names the
// problem and the fix, before any training step.
import { describe, it, expect, beforeEach } from 'vitest';
import { Accelerator, AcceleratorState } from '@accelerate/core';
import * as torch from '@accelerate/backend-libtorch';
import { Linear, TfjsBackend } from '@accelerate/backend-tfjs';
import { fsdp, FsdpConfigError } from '../src/index.js';

const { nn } = torch;
const make = (opts: ConstructorParameters<typeof Accelerator>[0] = {}, env: Record<string, string> = {}) =>
  new Accelerator({ backend: torch.libtorch(), configFile: false, env, ...opts });
const errorOf = (p: Promise<unknown>) => p.then(() => undefined, (e: Error) => e);

beforeEach(async () => {
  await AcceleratorState.resetState();
});

describe('FSDP in one process (NO_SHARD)', () => {
  it('mixedPrecisionPolicy: parameters compute in bfloat16, the root\'s outputs leave in outputDtype (FSDP2)', async () => {
    const acc = make({ plugins: [fsdp({ shardingStrategy: 'NO_SHARD', mixedPrecisionPolicy: { paramDtype: 'bf16', outputDtype: 'fp32' } })] });
    const model = new nn.Sequential(new nn.Linear(4, 8), new nn.ReLU(), new nn.Linear(8, 2));
    const [m] = await acc.prepare(model);
    expect(m.parameters()[0].dtype).toBe('bfloat16');
    const out = m.forward(torch.randn([3, 4]));
    expect(out.dtype).toBe('float32');
    await AcceleratorState.resetState();
    const plain = make({ plugins: [fsdp({ shardingStrategy: 'NO_SHARD', mixedPrecisionPolicy: 'bf16' })] });
    const [p] = await plain.prepare(new nn.Sequential(new nn.Linear(4, 8), new nn.ReLU(), new nn.Linear(8, 2)));
    expect(p.forward(torch.randn([3, 4])).dtype).toBe('bfloat16');
  });
});

describe('FSDP refuses, naming the fix', () => {
  it('a sharding strategy with one process: launch several, or use NO_SHARD', async () => {
    const err = await errorOf(make({ plugins: [fsdp({ shardingStrategy: 'FULL_SHARD' })] }).prepare(new nn.Linear(4, 4)));
    expect(err).toBeInstanceOf(FsdpConfigError);
    expect(err!.message).toMatch(/shardingStrategy/);
    expect(err!.message).toMatch(/FULL_SHARD/);
    expect(err!.message).toMatch(/--num_processes|NO_SHARD/);
  });

  it('[B63] TRANSFORMER_BASED_WRAP with a class the model does not contain names it and the classes the model has', async () => {
    const acc = make({ plugins: [fsdp({ shardingStrategy: 'NO_SHARD', autoWrapPolicy: { transformerLayerClasses: ['DecoderLayer'] } })] });
    const model = new nn.Sequential(new nn.Linear(4, 8), new nn.ReLU(), new nn.Linear(8, 2));
    const err = await errorOf(acc.prepare(model));
    expect(err!.message).toContain('DecoderLayer');
    expect(err!.message).toContain('Linear');
  });

  it('[B61] distributed_type FSDP from the environment alone loads this package (found by its package.json field) and applies its settings', async () => {
    // One process with the default FULL_SHARD: the plugin was found, built from FSDP_* and refused the strategy.
    const err = await errorOf(make({}, { ACCELERATE_USE_FSDP: 'true', FSDP_SHARDING_STRATEGY: 'SHARD_GRAD_OP' }).prepare(new nn.Linear(4, 4)));
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toMatch(/FSDP_SHARDING_STRATEGY="?SHARD_GRAD_OP/);
    // NO_SHARD runs on one process: the strategy really is FSDP.
    const acc = make({}, { ACCELERATE_USE_FSDP: 'true', FSDP_SHARDING_STRATEGY: 'NO_SHARD' });
    await acc.prepare(new nn.Linear(4, 4));
    expect(acc.strategy.name).toBe('FSDP');
    expect(String(acc.distributedType)).toBe('FSDP');
  });

  it('the tfjs backend: one capability error naming "sharding", the backend and the plugin', async () => {
    const backend = await TfjsBackend.create({ engine: 'wasm' });
    const acc = new Accelerator({ backend, configFile: false, env: {}, plugins: [fsdp({ shardingStrategy: 'NO_SHARD' })] });
    const err = await errorOf(acc.prepare(new Linear(4, 2)));
    expect(err!.message).toContain('"sharding" capability');
    expect(err!.message).toContain('"tfjs" backend');
    expect(err!.message).toContain('FSDP');
  });

  it('float16 parameters: FSDP keeps float32 master weights and says how to get half-precision compute', async () => {
    const acc = make({ plugins: [fsdp({ shardingStrategy: 'NO_SHARD' })] });
    const model = new nn.Linear(4, 4);
    model.to({ dtype: 'bfloat16' });
    const err = await errorOf(acc.prepare(model));
    expect(err!.message).toMatch(/float32 master weights/);
    expect(err!.message).toMatch(/mixedPrecisionPolicy/);
  });

  it('an optimizer prepared before its model is refused with the order to use', async () => {
    const acc = make({ plugins: [fsdp({ shardingStrategy: 'NO_SHARD' })] });
    const model = new nn.Linear(4, 4);
    const err = await errorOf(acc.prepare(new torch.optim.AdamW(model.parameters())));
    expect(err!.message).toMatch(/prepare\(model, optimizer\)/);
  });
});
