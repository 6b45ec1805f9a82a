/**
 * The strategy slot: one distribution strategy per Accelerator, chosen from
 * the plugins or the configuration, never a silent fallback to DDP.
 */
import { describe, it, expect, beforeEach } from 'vitest';
import { Accelerator } from '../../src/accelerator/accelerator.js';
import { AcceleratorState } from '../../src/state/accelerator-state.js';
import { setLogSink, type LogRecord } from '../../src/utils/logging.js';
import type { Plugin, PluginContext } from '../../src/interfaces/plugin.js';
import type { DistributionStrategy } from '../../src/interfaces/strategy.js';
import { DistributedType } from '../../src/state/distributed-type.js';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { ReferenceBackend, RegressionModel, SGD, mseLoss, tensor } from '../../src/testing/index.js';

const make = (opts: ConstructorParameters<typeof Accelerator>[0] = {}, env: Record<string, string> = {}) =>
  new Accelerator({ backend: new ReferenceBackend(), configFile: false, env, ...opts });

beforeEach(async () => {
  await AcceleratorState.resetState();
});

/** A strategy that records what the Accelerator asks of it. */
function recordingStrategy(extra: Partial<DistributionStrategy> = {}) {
  const calls: string[] = [];
  const strategy: DistributionStrategy = {
    name: 'recording',
    wrapModel(model, ctx) {
      calls.push(`wrap:${ctx.device}:${ctx.numProcesses}`);
      return model;
    },
    afterOptimizerStep(models) {
      calls.push(`after-step:${models.length}`);
    },
    clipGradNorm(params, maxNorm) {
      calls.push(`clip:${params.length}:${maxNorm}`);
      return 42;
    },
    stateDict(_model, options) {
      calls.push(`state-dict:${options.type}`);
      return { w: HostTensor.fromNumbers([1, 2], [2], 'float32') };
    },
    unwrapModel(model) {
      calls.push('unwrap');
      return model;
    },
    ...extra,
  };
  return { strategy, calls };
}

describe('the strategy slot', () => {
  it('uses single-process on one process when no plugin provides a strategy', async () => {
    const acc = make();
    await acc.prepare(new RegressionModel());
    expect(acc.strategy.name).toBe('single-process');
    expect(acc.distributedType).toBe(DistributedType.NO);
  });

  it("runs a plugin's strategy: wrapModel, clipGradNorm, afterOptimizerStep, getStateDict and unwrapModel go to it", async () => {
    const { strategy, calls } = recordingStrategy({ distributedType: DistributedType.FSDP });
    const acc = make({ plugins: [{ name: 'mine', strategy }], gradientAccumulationSteps: 2 });
    const model = new RegressionModel();
    const [m, opt] = await acc.prepare(model, new SGD(model.parameters(), { lr: 0.1 }));
    expect(acc.strategy).toBe(strategy);
    expect(acc.distributedType).toBe(DistributedType.FSDP);
    expect(calls).toEqual(['wrap:cpu:1']);
    for (let i = 0; i < 4; i++) {
      await acc.accumulate(m, () => {
        const loss = mseLoss(m.forward(tensor([[1], [2]])), tensor([[2], [4]]));
        acc.backward(loss);
        opt.step();
        opt.zeroGrad();
      });
    }
    // Two real steps out of four micro-steps (accumulation 2).
    expect(calls.filter((c) => c.startsWith('after-step'))).toEqual(['after-step:1', 'after-step:1']);
    expect(acc.clipGradNorm(m, 0.5)).toBe(42);
    expect(calls).toContain(`clip:${model.parameters().length}:0.5`);
    const sd = await acc.getStateDict(m);
    expect([...sd.w!.data as Float32Array]).toEqual([1, 2]);
    expect(calls).toContain('state-dict:full');
    acc.unwrapModel(m);
    expect(calls).toContain('unwrap');
  });

  it('builds a strategy given as a function once, with the plugin context', async () => {
    let built = 0;
    let seen: PluginContext | undefined;
    const plugin: Plugin = {
      name: 'lazy',
      strategy: (ctx) => {
        built++;
        seen = ctx;
        return { name: 'lazy-strategy', wrapModel: (m) => m };
      },
    };
    const acc = make({ plugins: [plugin] });
    await acc.prepare(new RegressionModel());
    await acc.prepare(new RegressionModel());
    expect(built).toBe(1);
    expect(acc.strategy.name).toBe('lazy-strategy');
    expect(seen?.backend).toBe(acc.backend);
    expect(seen?.numProcesses).toBe(1);
  });

  it('refuses two strategy plugins, naming both', async () => {
    const a = recordingStrategy().strategy;
    const b = recordingStrategy().strategy;
    const acc = make({ plugins: [{ name: 'first', strategy: a }, { name: 'second', strategy: b }] });
    await expect(acc.prepare(new RegressionModel())).rejects.toThrow(/"first" and "second" both provide a distribution strategy/);
  });

  // (@accelerate/plugin-fsdp and @accelerate/plugin-deepspeed are installed in this workspace; FSDP's discovery is
  // covered in packages/plugin-fsdp/test, DeepSpeed's just below.)
  it.each([
    ['ACCELERATE_USE_MEGATRON_LM', 'MEGATRON_LM', '@accelerate/plugin-megatron'],
  ])('%s=true without its package stops in ready(), naming the package to install', async (envVar, type, pkg) => {
    const acc = make({}, { [envVar]: 'true' });
    const err = await acc.ready().then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toContain(`asks for ${type}`);
    expect(err?.message).toContain(`npm install ${pkg}`);
    expect(err?.message).toMatch(/does not fall back to DDP/);
  });

  it('ACCELERATE_USE_DEEPSPEED=true finds the installed @accelerate/plugin-deepspeed (its strategy resolves the config, then says the bridge is not part of this version)', async () => {
    const acc = make({}, { ACCELERATE_USE_DEEPSPEED: 'true' });
    const err = await acc
      .ready()
      .then(() => acc.prepare(new RegressionModel()))
      .then(
        () => undefined,
        (e: Error) => e,
      );
    expect(err?.message).not.toContain('npm install @accelerate/plugin-deepspeed');
    expect(err?.message).toContain('configuration is valid (ZeRO stage 2)');
    expect(err?.message).toContain('bridge that runs the DeepSpeed engine in a Python worker is not part of this version');
  });

  it('accepts a plugin strategy of the requested kind, and refuses one of another kind', async () => {
    const fsdpLike = recordingStrategy({ name: 'my-fsdp', distributedType: DistributedType.FSDP }).strategy;
    const ok = make({ plugins: [{ name: 'fsdp', strategy: fsdpLike }] }, { ACCELERATE_USE_FSDP: 'true' });
    await ok.prepare(new RegressionModel());
    expect(ok.strategy.name).toBe('my-fsdp');
    await AcceleratorState.resetState();
    const other = recordingStrategy({ name: 'local-sgd' }).strategy;
    const bad = make({ plugins: [{ name: 'local', strategy: other }] }, { ACCELERATE_USE_DEEPSPEED: 'true' });
    await expect(bad.prepare(new RegressionModel())).rejects.toThrow(/asks for DEEPSPEED, but plugin "local" provides the "local-sgd" strategy/);
  });

  it('names the capability and the backend when a strategy needs one the backend lacks', async () => {
    const backend = new ReferenceBackend();
    Object.defineProperty(backend, 'dataParallel', { value: undefined });
    const strategy: DistributionStrategy = { name: 'needs-ddp', requires: ['dataParallel'], wrapModel: (m) => m };
    const acc = new Accelerator({ backend, configFile: false, env: {}, plugins: [{ name: 'p', strategy }] });
    await expect(acc.prepare(new RegressionModel())).rejects.toThrow(/"needs-ddp" strategy \(plugin "p"\) needs the "dataParallel" capability .* "reference" backend/);
  });
});

describe('the plugin context', () => {
  it('gives each plugin its options (config-hook defaults), the backend, the state, a prefixed logger, and participants', async () => {
    const records: LogRecord[] = [];
    setLogSink((r) => void records.push(r));
    try {
      let ctx: PluginContext<{ every: number }> | undefined;
      const plugin: Plugin<{ every: number }> = {
        name: 'local-sgd',
        config: () => ({ every: 4 }),
        configResolved(c) {
          ctx = c;
          c.logger.warning('ready');
        },
      };
      const acc = make({ plugins: [plugin] });
      await acc.prepare(new RegressionModel());
      expect(ctx?.options).toEqual({ every: 4 });
      expect(ctx?.backend).toBe(acc.backend);
      expect(ctx?.state.numProcesses).toBe(1);
      expect(ctx?.group).toBeUndefined();
      await expect(ctx!.newGroup([0])).rejects.toThrow(/no process group on one process/);
      expect(records.some((r) => r.message.endsWith('] [local-sgd] ready') && r.name === 'accelerate.plugin.local-sgd')).toBe(true);
      const participant = { name: 'counter', save: async () => {}, read: async () => () => {} };
      ctx!.addCheckpointParticipant(participant);
      expect(() => ctx!.addCheckpointParticipant(participant)).toThrow(/\[local-sgd\] addCheckpointParticipant: a participant named "counter" was added already/);
    } finally {
      setLogSink(undefined);
    }
  });

  it("reads its typed section over its config-hook defaults: the plugin's default loses to env, file and flags", async () => {
    const seen: Array<PluginContext<Record<string, unknown>>> = [];
    const plugin = (): Plugin => ({
      name: 'my-fsdp',
      section: 'fsdp',
      config: () => ({ shardingStrategy: 'SHARD_GRAD_OP', offloadParams: true }),
      configResolved: (c) => void seen.push(c),
    });
    await make({ plugins: [plugin()] }).prepare(new RegressionModel());
    expect(seen[0]!.options.shardingStrategy).toBe('SHARD_GRAD_OP');
    expect(seen[0]!.options.offloadParams).toBe(true);
    expect(seen[0]!.resolvedConfig.section('fsdp').shardingStrategy.source).toBe('plugin default');
    await AcceleratorState.resetState();
    await make({ plugins: [plugin()] }, { FSDP_SHARDING_STRATEGY: 'FULL_SHARD' }).prepare(new RegressionModel());
    expect(seen[1]!.options.shardingStrategy).toBe('FULL_SHARD');
    expect(seen[1]!.resolvedConfig.section('fsdp').shardingStrategy.source).toBe('env');
    expect(seen[1]!.options.offloadParams).toBe(true);
  });
});
